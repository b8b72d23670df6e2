"""`homeostat bench audit` runs end to end and writes the figures in the documented JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app


def test_bench_writes_sqlite_and_postgres_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON has append/verify/replay rates for SQLite, and postgres null when no server is given."""
    monkeypatch.delenv("HOMEOSTAT_TEST_PG_URL", raising=False)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "audit", "--records", "40", "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(figures) == {"sqlite", "postgres"}
    assert figures["postgres"] is None
    sqlite = figures["sqlite"]
    assert sqlite["records"] == 41 and sqlite["decisions"] == 4
    for key in ("append_per_s", "verify_per_s", "replay_per_s"):
        assert sqlite[key] > 0
