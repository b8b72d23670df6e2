"""Helpers to run `homeostat run` (and `homeostat sim serve`) as real subprocesses on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests._daemon_harness import REPO, free_port, wait_for

__all__ = ["REPO", "free_port", "start_cli", "stop", "wait_for"]


def start_cli(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`python -m runtime.cli ARGS` with stdout and stderr in `log`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", *args], cwd=REPO, stdout=out, stderr=out, env=full_env
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Clean-up: SIGTERM, then SIGKILL if still running after 20 s (unlike the harness's graceful `stop`)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
