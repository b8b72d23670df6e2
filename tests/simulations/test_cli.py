"""`homeostat sim` commands: listing, validating and benchmarking scenarios from the shell."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from runtime.cli import app
from simulations import builtin_scenarios

runner = CliRunner()


def test_list_shows_every_shipped_scenario() -> None:
    """`sim list` prints one row per shipped scenario with its cause or (control)."""
    result = runner.invoke(app, ["sim", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for path in builtin_scenarios():
        assert path.stem in result.output
    assert "(control)" in result.output


def test_validate_accepts_good_and_names_the_line_of_bad(tmp_path: Path) -> None:
    """`sim validate` says ok for a good file and exits 1 naming file:line for a bad one."""
    good = builtin_scenarios()[0]
    ok = runner.invoke(app, ["sim", "validate", str(good)])
    assert ok.exit_code == 0 and "ok" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nseed: 1\nduration: 1h\ninjections:\n  - {type: fault, at: 40m, fault: nope}\n")
    failed = runner.invoke(app, ["sim", "validate", str(good), str(bad)])
    assert failed.exit_code == 1
    assert f"{bad}:5: injections.0.fault" in failed.output


def test_bench_writes_both_controllers_summaries(tmp_path: Path) -> None:
    """`sim bench --json` plays scenarios through the loop and the baseline and writes both roll-ups."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "short_bad_prompt.yaml").write_text(
        "name: short_bad_prompt\nseed: 11\nduration: 50m\nstart: 2026-03-02T08:00:00Z\n"
        "injections:\n  - {type: fault, at: 30m, fault: bad_prompt_deploy, service: support-chat}\n"
        "ground_truth:\n  cause: bad_prompt_deploy\n  service: support-chat\n"
        "  acceptable_actions: [rollback_prompt_version]\n  harmful_actions: [failover_provider]\n"
    )
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["sim", "bench", "--scenarios", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    keys = {
        "detection_rate",
        "mttd_s",
        "diagnosis_accuracy",
        "right_action_rate",
        "mttr_s",
        "false_actions",
        "unsafe_actions",
    }
    assert keys <= set(report["overall"]) and keys <= set(report["baseline"])
    assert report["overall"]["scenarios"] == 1 and report["baseline"]["controller"] == "baseline"
    assert [s["scenario"] for s in report["scenarios"]] == ["short_bad_prompt"]
