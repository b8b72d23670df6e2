"""The shipped commands behind DETECTION.md's figures: each runs on a tiny input and reports its fields."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import typer
from typer.testing import CliRunner, Result

from runtime.cli import app
from runtime.detection import bench
from runtime.detection.bench_noise import KINDS, false_alarms, noise_series
from runtime.detection.bench_search import candidates, draw_settings, judge
from runtime.detection.bench_search import main as search_main
from runtime.detection.bench_seasonal import seasonal_polls

SCENARIO = """\
name: tiny_outage
description: a provider fails ten minutes in
seed: 7
duration: 25m
start: 2026-03-02T09:00:00Z
injections:
  - {type: fault, at: 10m, fault: provider_outage, provider: llm-alpha, severity: 1.0, shape: sudden}
ground_truth:
  cause: provider_degradation
  service: support-chat
  provider: llm-alpha
  acceptable_actions: [failover_provider]
  expect_incident: true
"""


def _bench(args: list[str]) -> Result:
    bench_app = typer.Typer()
    bench.register(bench_app)
    return CliRunner().invoke(bench_app, args)


@pytest.mark.parametrize("command", [[], ["noise"]])
def test_a_folder_without_nab_data_exits_2_before_measuring(tmp_path, command):
    """`--nab` pointing at a folder without NAB's scorer is refused at once with exit code 2."""
    result = _bench(["detection", *command, "--nab", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a NAB data folder" in result.stderr


def test_a_bad_detection_config_for_the_nab_run_exits_2_naming_file_line_and_key(tmp_path):
    """`bench detection --config` with a misspelt key is refused before anything is measured."""
    (tmp_path / "score.py").write_text("")  # passes the NAB-folder check; scoring never starts
    config = tmp_path / "robust_only.yaml"
    config.write_text("unknown_signals: {detectors: [robust, adwin]}\ndefaults: {adwin_blok: 1}\n")
    result = _bench(["detection", "--nab", str(tmp_path), "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}:2: defaults.adwin_blok" in result.stderr


class TestSeasonalBench:
    def test_reports_both_paths_per_amplitude_with_identical_anomalies(self, tmp_path):
        """`bench detection seasonal` times the compiled and one-sample paths per amplitude and checks they agree."""
        out = tmp_path / "seasonal.json"
        args = ["detection", "seasonal", "--series", "3", "--days", "0.2", "--amplitudes", "0,20", "--json", str(out)]
        result = _bench(args)
        assert result.exit_code == 0, result.output
        figures = json.loads(out.read_text())
        rows = figures["rows"]
        assert figures["warm_series_release_and_adopt"]["us_per_release_and_adopt"] > 0
        assert [r["amplitude"] for r in rows] == [0.0, 20.0]
        for row in rows:
            assert row["identical"] is True
            assert row["rows"] == 3 * 57
            assert row["compiled_us_per_row"] > 0 and row["one_by_one_us_per_row"] > 0

    def test_polls_are_seeded(self):
        """The same seed draws the same seasonal polls; another seed draws others."""
        assert seasonal_polls(2, 0.1, 3.0, seed=1) == seasonal_polls(2, 0.1, 3.0, seed=1)
        assert seasonal_polls(2, 0.1, 3.0, seed=1)[1] != seasonal_polls(2, 0.1, 3.0, seed=2)[1]

    def test_bad_amplitudes_exit_2_naming_the_option(self):
        """A non-numeric amplitude list is refused with exit code 2 and the option's name."""
        result = _bench(["detection", "seasonal", "--amplitudes", "0,big"])
        assert result.exit_code == 2
        assert "--amplitudes" in result.stderr


class TestNoiseBench:
    def test_reports_rates_per_kind_and_tail(self, tmp_path):
        """`bench detection noise` gives alarms per 10k samples for every noise kind at every lik_tail."""
        out = tmp_path / "noise.json"
        args = ["detection", "noise", "--series", "1", "--length", "300", "--tails", "1e-4,1e-6", "--json", str(out)]
        result = _bench(args)
        assert result.exit_code == 0, result.output
        rows = json.loads(out.read_text())["rows"]
        assert [r["lik_tail"] for r in rows] == [1e-4, 1e-6]
        for row in rows:
            for kind in KINDS:
                assert set(row[kind]) == {"likelihood_per_10k", "all_per_10k", "paging_per_10k", "samples"}
                assert row[kind]["samples"] == 300

    def test_a_level_step_in_the_noise_is_counted(self):
        """Alarms are really counted: the random walk's wandering level raises some where white noise raises none."""
        rates = false_alarms(None, kinds=("white", "walk"), n_series=1, length=3000, seed=0)
        assert rates["white"]["all_per_10k"] == 0.0
        assert rates["walk"]["all_per_10k"] > 0.0

    def test_series_are_seeded_and_shaped(self):
        """Each kind is reproducible by seed; an AR(1) series is autocorrelated, white noise is not."""
        assert noise_series("ar1", 50, 3) == noise_series("ar1", 50, 3)

        def lag1(xs: list[float]) -> float:
            m = sum(xs) / len(xs)
            num = sum((a - m) * (b - m) for a, b in itertools.pairwise(xs))
            return num / sum((a - m) ** 2 for a in xs)

        assert lag1(noise_series("ar1", 4000, 0)) > 0.8
        assert abs(lag1(noise_series("white", 4000, 0))) < 0.1
        with pytest.raises(ValueError, match="noise kind 'pink'"):
            noise_series("pink", 10, 0)

    @pytest.mark.parametrize("tails", ["0", "0.7", "1e-4,abc"])
    def test_bad_tails_exit_2(self, tails):
        """A lik_tail outside (0, 0.5) or not a number is refused with exit code 2."""
        result = _bench(["detection", "noise", "--tails", tails])
        assert result.exit_code == 2
        assert "--tails" in result.stderr


class TestFleetBench:
    def test_reports_alarms_on_the_faulty_service(self, tmp_path):
        """`bench detection fleet` runs a scenario folder in polls and finds the outage on the faulty service."""
        (tmp_path / "tiny.yaml").write_text(SCENARIO)
        out = tmp_path / "fleet.json"
        result = _bench(["detection", "fleet", "--scenarios", str(tmp_path), "--json", str(out)])
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        assert report["poll_s"] == 60.0 and report["fault_scenarios"] == 1
        (row,) = report["scenarios"]
        assert row["scenario"] == "tiny_outage" and row["faulty_services"] == ["support-chat"]
        assert row["onset_s"] == 600.0
        assert row["alarms_on_faulty"] >= 1
        assert row["first_alarm_after_onset_s"] is not None and 0 <= row["first_alarm_after_onset_s"] <= 300
        assert report["faults_with_alarm_on_faulty_service"] == 1

    def test_a_bad_detection_config_exits_2_naming_the_file(self, tmp_path):
        """`--config` with an unknown field is refused with exit code 2 naming file and field."""
        folder = tmp_path / "scenarios"
        folder.mkdir()
        (folder / "tiny.yaml").write_text(SCENARIO)
        bad = tmp_path / "detection.yaml"
        bad.write_text("defaults:\n  adwin_blok: 1\n")
        result = _bench(["detection", "fleet", "--scenarios", str(folder), "--config", str(bad)])
        assert result.exit_code == 2
        assert "detection.yaml" in result.stderr and "adwin_blok" in result.stderr

    def test_unknown_scenario_name_exits_2(self, tmp_path):
        """Asking for a scenario the folder does not hold is refused with exit code 2 naming it."""
        (tmp_path / "tiny.yaml").write_text(SCENARIO)
        result = _bench(["detection", "fleet", "--scenarios", str(tmp_path), "--scenario", "nope"])
        assert result.exit_code == 2
        assert "nope" in result.stderr


class TestSearch:
    def test_draws_are_seeded_and_a_prefix_of_longer_runs(self):
        """The first k settings of a long search are the settings of a k-setting search with the same seed."""
        assert draw_settings(12, seed=3)[:5] == draw_settings(5, seed=3)
        assert draw_settings(5, seed=3) != draw_settings(5, seed=4)
        cands = candidates(draw_settings(2), (0, 100))
        assert [c["lik_quiet"] for c in cands] == [0, 100, 0, 100]

    def test_drawn_settings_are_valid_configs(self):
        """Every drawn setting is accepted by the detection config (the search never fails mid-run)."""
        from runtime.detection.config import config_from_dict

        for cand in candidates(draw_settings(8), (0, 400)):
            config_from_dict({"unknown_signals": cand})

    def test_held_out_score_uses_the_choice_made_without_the_category(self):
        """Each category is scored under the candidate best on the other categories (no reward for overfitting)."""

        def files(a: float, b: float) -> dict[str, dict[str, object]]:
            return {
                "A/1.csv": {"windows": 1, "raw": {"standard": a}},
                "B/1.csv": {"windows": 1, "raw": {"standard": b}},
            }

        # candidate 0 is great on A only, candidate 1 is good on B only
        results = [files(1.0, -1.0), files(-0.5, 0.5)]
        verdict = judge([{"x": 0}, {"x": 1}], results)
        assert verdict["in_sample_best"] == pytest.approx(50.0)  # both candidates total 0 raw over 2 windows
        assert verdict["folds"]["A"]["chosen"] == 1 and verdict["folds"]["B"]["chosen"] == 0
        assert verdict["held_out_pooled"] == pytest.approx(100 * (-0.5 - 1.0 + 2) / 4)
        assert not math.isnan(verdict["held_out_pooled"])

    @pytest.mark.parametrize("args", [["--settings", "0"], ["--quiet", "a,b"], []])
    def test_bad_arguments_exit_2(self, tmp_path, args, capsys):
        """A missing NAB folder, zero settings or a bad quiet list exit with code 2 and say what is wrong."""
        with pytest.raises(SystemExit) as info:
            search_main([str(tmp_path), *args])
        assert info.value.code == 2
        assert "error" in capsys.readouterr().err


class TestSimSeeds:
    def test_prints_cause_and_action_per_seed(self, tmp_path):
        """`sim seeds` plays the scenario once per seed and reports the diagnosed cause and the action of each."""
        path = tmp_path / "tiny.yaml"
        path.write_text(SCENARIO)
        out = tmp_path / "seeds.json"
        result = CliRunner().invoke(
            app, ["sim", "seeds", "--scenario", str(path), "--seeds", "1-2", "--json", str(out)]
        )
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        assert report["scenario"] == "tiny_outage" and report["truth"] == "provider_degradation"
        assert [row["seed"] for row in report["seeds"]] == [1, 2]
        for row in report["seeds"]:
            assert {"causes", "actions", "applied", "cause_correct", "action_correct", "incidents"} <= set(row)
            assert "provider_degradation" in row["causes"]
            assert any(a.startswith("failover_provider:") for a in row["actions"])
        assert "seed   1" in result.output and "cause right in 2 of 2" in result.output

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--scenario", "no_such_scenario"], "no shipped scenario named 'no_such_scenario'"),
            (["--scenario", "quiet_day", "--seeds", "8-1"], "--seeds"),
            (["--scenario", "quiet_day", "--seeds", "one"], "--seeds"),
        ],
    )
    def test_bad_arguments_exit_2(self, args, message):
        """An unknown scenario or a malformed seed range exits 2 naming the problem."""
        result = CliRunner().invoke(app, ["sim", "seeds", *args])
        assert result.exit_code == 2
        assert message in result.stderr
