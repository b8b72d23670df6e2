"""`homeostat run --config FILE --check`: everything the daemon loads at start, validated without starting it."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from runtime.cli import app

REPO = Path(__file__).resolve().parents[2]


def _deployment(tmp_path: Path) -> Path:
    shutil.copy(REPO / "constitution.yaml", tmp_path / "constitution.yaml")
    (tmp_path / "fleet.yaml").write_text(
        "services:\n"
        "  chat: {provider: llm-alpha, backup_provider: llm-beta, model_version: m, prompt_version: p,\n"
        "         traffic_share: 1}\n"
        "edges:\n"
        "  - [chat, kb]\n"
    )
    config = tmp_path / "homeostat.yaml"
    config.write_text(
        "database_url: postgresql://homeostat:s3cret@db.internal/homeostat\n"
        "topology: fleet.yaml\nsources:\n  - type: push\n"
    )
    return config


def _check(config: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--check"])
    return result.exit_code, result.stdout, result.stderr


def test_a_good_deployment_is_summarised_and_nothing_starts(tmp_path: Path) -> None:
    """Exit 0 with rules, topology size and sources; no password shown; the unreachable database is never dialled."""
    code, out, _err = _check(_deployment(tmp_path))
    assert code == 0, out
    assert "config ok:" in out
    assert "rules, digest" in out
    assert "topology:" in out and "(2 services, 1 provider(s), 1 call(s))" in out
    assert "sources: push (push)" in out
    assert "s3cret" not in out and "db.internal/homeostat" in out


def test_a_bad_constitution_named_by_the_config_fails_the_check_at_its_line(tmp_path: Path) -> None:
    """A misspelt key in the constitution exits 2 with its file, line and key, and prints no summary."""
    config = _deployment(tmp_path)
    (tmp_path / "constitution.yaml").write_text("rules:\n  - {id: x, when: {actoin: escalate}, verdict: auto}\n")
    code, out, err = _check(config)
    assert code == 2
    assert f"{tmp_path / 'constitution.yaml'}:2: rules[0].when.actoin: unknown key" in err
    assert "config ok" not in out


def test_a_bad_topology_fails_the_check_with_the_topology_files_line(tmp_path: Path) -> None:
    """A one-ended edge in the fleet file exits 2 naming that file and line."""
    config = _deployment(tmp_path)
    (tmp_path / "fleet.yaml").write_text("edges:\n  - [chat, kb]\n  - [chat]\n")
    code, _out, err = _check(config)
    assert code == 2
    assert f"{tmp_path / 'fleet.yaml'}:3: edges[1]: must be [caller, callee] strings" in err
