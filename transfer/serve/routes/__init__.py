"""The server's routes by area: ``read`` (JSON reads), ``write`` (token-guarded writes), ``jobs`` (long
work) and ``pages`` (the web UI)."""
