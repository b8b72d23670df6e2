"""The learned localisation ranker: a conditional logit fitted on labelled cases, its generic
features, the cross-validation protocol behind `homeostat diagnose train`, and the command."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agents.diagnosis import DeterministicDiagnoser
from agents.diagnosis.ranker import (
    FEATURES,
    RankingCase,
    TrainingCase,
    cross_validate,
    family_of,
    fit,
    folds,
    order,
    probabilities,
)
from runtime.cli import app

from .test_diagnosis_peers import CPU, MEM, PODS, incident

runner = CliRunner()


def synthetic_cases(n: int, seed: int = 3, services: int = 6) -> list[TrainingCase]:
    """Cases where feature 0 is highest on the culprit, feature 1 is noise and feature 2 is lowest
    on the culprit."""
    rng = random.Random(seed)
    out: list[TrainingCase] = []
    for i in range(n):
        x = np.array([[rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)] for _ in range(services)])
        truth = rng.randrange(services)
        x[truth, 0] = x[:, 0].max() + rng.uniform(0.1, 1.0)
        x[truth, 2] = x[:, 2].min() - rng.uniform(0.1, 1.0)
        out.append(TrainingCase(f"case-{i:03d}", tuple(f"s{j}" for j in range(services)), x, truth))
    return out


class TestFit:
    def test_the_deciding_features_get_the_right_signs_and_the_noise_the_smallest_weight(self) -> None:
        """A feature that marks the culprit gets a positive weight, one that marks it by its absence a
        negative one, and the noise feature the smallest magnitude."""
        w = fit(synthetic_cases(60), l2=1.0)
        assert w[0] > 0 > w[2]
        assert abs(w[1]) < min(abs(w[0]), abs(w[2]))

    def test_the_fitted_weights_rank_held_out_culprits_first(self) -> None:
        """Weights fitted on one set of synthetic cases put the culprit first on fresh ones."""
        w = fit(synthetic_cases(60, seed=1), l2=1.0)
        fresh = synthetic_cases(30, seed=2)
        assert all(order(c.services, c.x, w)[0][0] == c.services[c.truth] for c in fresh)

    def test_fitting_is_deterministic_and_does_not_depend_on_case_or_service_order(self) -> None:
        """The same cases, shuffled and with their services permuted, give the same weights."""
        cases = synthetic_cases(40)
        rng = random.Random(9)
        shuffled: list[TrainingCase] = []
        for c in cases:
            perm = list(range(len(c.services)))
            rng.shuffle(perm)
            shuffled.append(TrainingCase(c.case, tuple(c.services[p] for p in perm), c.x[perm], perm.index(c.truth)))
        rng.shuffle(shuffled)
        w1, w2, w3 = fit(cases), fit(cases), fit(shuffled)
        assert np.array_equal(w1, w2)
        assert np.allclose(w1, w3, atol=1e-9)

    def test_order_is_by_score_then_name_and_probabilities_sum_to_one(self) -> None:
        """Equal scores break on the service name whatever the input order; P sums to 1."""
        x = np.array([[1.0], [2.0], [1.0]])
        assert [s for s, _ in order(("b", "c", "a"), x, [1.0])] == ["c", "a", "b"]
        assert [s for s, _ in order(("a", "c", "b"), x[[2, 1, 0]], [1.0])] == ["c", "a", "b"]
        assert probabilities(x, [1.0]).sum() == pytest.approx(1.0)

    def test_bad_arguments_are_refused(self) -> None:
        """No cases, a non-positive l2 or a weight vector of the wrong size is a clear error."""
        with pytest.raises(ValueError, match="at least one"):
            fit([])
        with pytest.raises(ValueError, match="l2 must be > 0"):
            fit(synthetic_cases(3), l2=0.0)
        with pytest.raises(ValueError, match="3 columns but the weights have 2"):
            order(("a",), np.zeros((1, 3)), [1.0, 2.0])


def _ranking_cases(n: int) -> list[RankingCase]:
    return [
        RankingCase(
            case=c.case,
            system="sys-a" if i % 3 else "sys-b",
            head=(),
            hand_order=tuple(sorted(c.services)),
            training=c,
        )
        for i, c in enumerate(synthetic_cases(n))
    ]


class TestCrossValidation:
    def test_no_fold_fits_on_the_cases_it_scores(self) -> None:
        """Every fitter call receives only its fold's training cases, never a held-out one."""
        cases = _ranking_cases(20)
        seen: list[set[str]] = []

        def spy(training: Sequence[TrainingCase]) -> tuple[np.ndarray, float]:
            seen.append({c.case for c in training})
            return fit(training), 1.0

        results = cross_validate(cases, spy)
        assert len(seen) == len(results) == 2 + 2 + 5
        for names, result in zip(seen, results, strict=True):
            assert names.isdisjoint(result.held_out), result.name
            assert names | set(result.held_out) == {c.case for c in cases}

    def test_each_protocol_holds_out_every_case_exactly_once(self) -> None:
        """Halves, leave-one-system-out and 5-fold each score every case once."""
        cases = _ranking_cases(23)
        by_protocol: dict[str, list[str]] = {}
        for name, _train, held in folds(cases):
            by_protocol.setdefault(name.split(":")[0], []).extend(c.case for c in held)
        assert set(by_protocol) == {"halves", "leave-one-system-out", "5-fold"}
        for held_out in by_protocol.values():
            assert sorted(held_out) == sorted(c.case for c in cases)

    def test_the_learned_ranker_beats_a_useless_hand_order_on_held_out_cases(self) -> None:
        """On cases one feature decides, the held-out learned order finds the culprits the
        alphabetical hand order misses, and confident-hypothesis services stay first."""
        cases = _ranking_cases(30)
        results = cross_validate(cases)
        assert sum(r.learned_ac1 for r in results) > sum(r.hand_ac1 for r in results)
        headed = RankingCase("x", "s", ("s5",), cases[0].hand_order, cases[0].training)
        assert headed.learned_order(fit([c.training for c in cases]))[0] == "s5"


class TestFeatures:
    def test_signal_families_come_from_name_fragments(self) -> None:
        """CPU, memory, client and server latency, network, syscalls and traffic are told apart by name."""
        assert family_of("CpuUsageRate(%)") == "cpu"
        assert family_of("MemoryUsageRate(%)") == "mem"
        assert family_of("PodClientLatencyP90(s)") == "latency_client"
        assert family_of("PodServerLatencyP99(s)") == "latency"
        assert family_of("latency_p95_ms") == "latency"
        assert family_of("NetworkTransmitBytes") == "network"
        assert family_of("SyscallWrite") == "syscall"
        assert family_of("PodWorkload(Ops)") == "traffic"
        assert family_of("quality_score") is None

    def test_the_pod_whose_cpu_stands_out_gets_the_top_cpu_features(self) -> None:
        """A CPU jump on one pod gives it the highest peer ratio and percentile of the CPU family."""
        table = DeterministicDiagnoser().rank_table(incident(PODS, after={("cart", CPU): 3.0, ("mail", MEM): 1.0}))
        assert table.x.shape == (len(PODS), len(FEATURES))
        cpu_peer = table.x[:, FEATURES.index("cpu_peer")]
        cpu_pct = table.x[:, FEATURES.index("cpu_pct")]
        cart = table.services.index("cart")
        assert cpu_peer.argmax() == cart and cpu_pct[cart] == 1.0
        assert table.x[cart, FEATURES.index("cpu_rise")] == cpu_peer[cart]
        assert table.x[table.services.index("front"), FEATURES.index("alerted")] == 1.0
        assert table.hand_order[0] == "cart"


def write_case(folder: Path, culprit: str, seed: int, *, truth: bool = True) -> None:
    """A case folder in the export format: a CPU jump on `culprit`, the alert on the first pod."""
    ctx = incident(PODS, after={(culprit, CPU): 2.5, ("front", MEM): 1.002}, seed=seed)
    folder.mkdir(parents=True)
    store = ctx.telemetry
    lines = [
        json.dumps({"ts": ts.timestamp(), "service": s, "signal": g, "value": v})
        for s in PODS
        for g in store.signals(s)
        for ts, v in store.window(s, g, ctx.onset.replace(hour=0), ctx.now + ctx.now.resolution)
    ]
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    anomaly = ctx.anomalies[0]
    (folder / "anomaly.json").write_text(
        json.dumps({"service": anomaly.service, "signal": anomaly.signal, "ts": ctx.onset.timestamp()})
    )
    if truth:
        (folder / "truth.json").write_text(json.dumps({"root_cause_service": culprit, "fault": "cpu"}))


class TestTrainCommand:
    def test_train_prints_folds_protocols_and_weights_and_writes_json(self, tmp_path: Path) -> None:
        """On labelled cases the command prints every fold, the pooled protocols and the weights."""
        for i, culprit in enumerate(["ads", "cart", "mail", "pay", "ship", "cart"]):
            write_case(tmp_path / "set" / f"case-{i}", culprit, seed=i)
        out = tmp_path / "train.json"
        result = runner.invoke(app, ["diagnose", "train", "--cases", str(tmp_path / "set"), "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert "halves: fit odd, score even" in result.output and "5-fold" in result.output
        report = json.loads(out.read_text())
        assert set(report["fit_all"]["weights"]) == set(FEATURES)
        assert report["fit_all"]["weights"]["cpu_peer"] > 0
        assert {row["protocol"] for row in report["cv"]} == {"halves", "5-fold"}

    def test_a_missing_folder_is_refused(self, tmp_path: Path) -> None:
        """A folder that does not exist is named, exit code 2."""
        result = runner.invoke(app, ["diagnose", "train", "--cases", str(tmp_path / "nope")])
        assert result.exit_code == 2
        assert "nope: not a folder of case folders" in result.output

    def test_a_folder_without_cases_is_refused(self, tmp_path: Path) -> None:
        """A folder with no case folders in it says what each case needs."""
        (tmp_path / "empty").mkdir()
        result = runner.invoke(app, ["diagnose", "train", "--cases", str(tmp_path / "empty")])
        assert result.exit_code == 2
        assert "no case folders (each needs samples.jsonl and anomaly.json)" in result.output

    def test_a_case_without_truth_or_with_an_unknown_culprit_is_named(self, tmp_path: Path) -> None:
        """A missing truth.json, or a culprit with no samples, is refused naming the file."""
        write_case(tmp_path / "a" / "case-0", "cart", seed=1, truth=False)
        result = runner.invoke(app, ["diagnose", "train", "--cases", str(tmp_path / "a")])
        assert result.exit_code == 2
        assert "case-0/truth.json: file not found" in result.output
        write_case(tmp_path / "b" / "case-0", "cart", seed=1)
        (tmp_path / "b" / "case-0" / "truth.json").write_text(json.dumps({"root_cause_service": "redis"}))
        result = runner.invoke(app, ["diagnose", "train", "--cases", str(tmp_path / "b")])
        assert result.exit_code == 2
        assert "root_cause_service 'redis' has no samples" in result.output


def test_train_uses_only_the_features_asked_for_and_refuses_unknown_ones(tmp_path: Path) -> None:
    """--features restricts the model to those columns; an unknown name is refused with the choices."""
    for i, culprit in enumerate(["ads", "cart", "mail", "pay"]):
        write_case(tmp_path / "set" / f"case-{i}", culprit, seed=i)
    out = tmp_path / "train.json"
    args = ["diagnose", "train", "--cases", str(tmp_path / "set"), "--json", str(out)]
    result = runner.invoke(app, [*args, "--features", "mem_peer, cpu_peer"])
    assert result.exit_code == 0, result.output
    assert list(json.loads(out.read_text())["fit_all"]["weights"]) == ["cpu_peer", "mem_peer"]
    result = runner.invoke(app, [*args, "--features", "cpu_peer,pod_name"])
    assert result.exit_code == 2
    assert "unknown feature(s) pod_name; choose from cpu_peer" in result.output
