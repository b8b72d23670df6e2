"""The code stays lint-clean, typed and layered: CI runs the checks a developer runs by hand.

ruff (lint and format), import-linter's layer contracts, and mypy over every package (strict on
domain, policies and agents, as pyproject.toml says). A failure prints the tool's own report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."],
    "import layers": [str(BIN / "lint-imports"), "--no-cache"],
    "mypy": [sys.executable, "-m", "mypy", "domain", "policies", "agents", "tools", "runtime", "simulations"],
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_tree_passes(name: str) -> None:
    """Each check exits 0 on the whole tree."""
    done = subprocess.run(CHECKS[name], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
