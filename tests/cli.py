"""Run the real ``kgraft`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kgraft(
    *args: str,
    store: str | None = None,
    timeout: float = 300,
    env: dict | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``kgraft [--store STORE] ARGS...``; returns the finished process (never raises on exit code)."""
    cmd = [sys.executable, "-m", "transfer.cli"]
    if store:
        cmd += ["--store", store]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        cmd + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or ROOT,
        check=False,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    """A user error: non-zero exit, one sentence containing ``fragment``, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert fragment.lower() in proc.stderr.lower(), proc.stderr
