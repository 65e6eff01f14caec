"""Third-party noise a normal ``kgraft`` run should not print.

- PyTorch warns that ``torch.jit.script`` is deprecated each time PyTorch Geometric is imported (it
  scripts a few classes at import); it says nothing about kgraft or the user's data.
- The Neo4j driver logs "Unable to retrieve routing information" (at ERROR, through Python's
  last-resort handler) before it raises; kgraft turns the raised error into its own one sentence, so
  the log line only repeats it.

Only these are silenced, by message and logger, for the command line; a library user keeps both.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party"]


def quiet_third_party() -> None:
    """Silence the known third-party warnings and driver logs (see the module docstring)."""
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    driver = logging.getLogger("neo4j")
    driver.addHandler(logging.NullHandler())
    driver.propagate = False
