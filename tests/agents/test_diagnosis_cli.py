"""`homeostat diagnose`: offline diagnosis of exported telemetry, case folders, the AC@k benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.diagnose_cli import SystemTopology, system_topology_for
from tests.agents import test_diagnosis_fleet as fleet

runner = CliRunner()


def export(scenario: fleet.Scenario, folder: Path, *, truth: str | None = None) -> Path:
    """Write a scenario in the exported case format (samples, anomaly, changes, topology)."""
    ctx, store = scenario.build()
    folder.mkdir(parents=True, exist_ok=True)
    topo = store.topology()
    lines = []
    for service in sorted(topo.services):
        for signal in store.signals(service):
            for ts, value in store.window(service, signal, ctx.onset.replace(hour=0), ctx.now):
                lines.append(json.dumps({"ts": ts.timestamp(), "service": service, "signal": signal, "value": value}))
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    first = sorted(ctx.anomalies, key=lambda a: a.ts)[0]
    (folder / "anomaly.json").write_text(
        json.dumps({"service": first.service, "signal": first.signal, "ts": ctx.onset.timestamp()})
    )
    changes = [
        {
            "ts": c.ts.timestamp(),
            "service": c.service,
            "kind": c.kind.value,
            "from": c.from_value,
            "to": c.to_value,
            "actor": c.actor,
            "id": c.id,
        }
        for c in scenario.changes
    ]
    (folder / "changes.jsonl").write_text("".join(json.dumps(c) + "\n" for c in changes))
    edges = [[name, callee] for name, info in sorted(topo.services.items()) for callee in info.depends_on]
    (folder / "topology.json").write_text(json.dumps({"edges": edges}))
    if truth:
        (folder / "truth.json").write_text(json.dumps({"root_cause_service": truth, "fault": "synthetic"}))
    return folder


class TestOfflineDiagnosis:
    def test_json_output_ranks_the_changed_service_first(self, tmp_path: Path) -> None:
        """The exported bad-prompt incident is diagnosed as bad_prompt_deploy on support-chat, not abstaining."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        result = runner.invoke(
            app,
            [
                "diagnose",
                "--samples",
                str(case / "samples.jsonl"),
                "--anomaly",
                str(case / "anomaly.json"),
                "--changes",
                str(case / "changes.jsonl"),
                "--topology",
                str(case / "topology.json"),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["abstain"] is False
        assert (out["ranked"][0]["service"], out["ranked"][0]["cause"]) == (fleet.SC, "bad_prompt_deploy")
        assert {e["type"] for e in out["ranked"][0]["evidence"]} == {"change", "series"}

    def test_upstream_callee_is_found_through_the_topology_file(self, tmp_path: Path) -> None:
        """With only the edges file, the anomalous callee is named as the upstream dependency."""
        case = export(fleet.upstream_dependency(), tmp_path / "c")
        result = runner.invoke(
            app,
            [
                "diagnose",
                "--samples",
                str(case / "samples.jsonl"),
                "--anomaly",
                str(case / "anomaly.json"),
                "--topology",
                str(case / "topology.json"),
                "--json",
            ],
        )
        out = json.loads(result.output)
        assert (out["ranked"][0]["service"], out["ranked"][0]["cause"]) == (fleet.KB, "upstream_dependency")

    def test_case_command_prints_the_evidence(self, tmp_path: Path) -> None:
        """`diagnose case DIR` shows cause, confidence, the change and the series it rests on."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        result = runner.invoke(app, ["diagnose", "case", str(case)])
        assert result.exit_code == 0, result.output
        assert "bad_prompt_deploy" in result.output
        assert "change chg-1 on support-chat" in result.output
        assert "series support-chat/quality_score" in result.output

    def test_a_bad_sample_line_is_named_with_file_line_and_field(self, tmp_path: Path) -> None:
        """A non-numeric value stops the run with file:line and the field named."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        lines = (case / "samples.jsonl").read_text().splitlines()
        lines[2] = json.dumps({"ts": 1, "service": "a", "signal": "b", "value": "high"})
        (case / "samples.jsonl").write_text("\n".join(lines))
        result = runner.invoke(app, ["diagnose", "case", str(case)])
        assert result.exit_code == 2
        assert "samples.jsonl:3: field 'value' must be a number" in result.output

    def test_an_unknown_change_kind_is_named(self, tmp_path: Path) -> None:
        """A change event with an unknown kind is refused, listing the allowed kinds."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        (case / "changes.jsonl").write_text(json.dumps({"ts": 1, "service": "a", "kind": "vibes"}) + "\n")
        result = runner.invoke(app, ["diagnose", "case", str(case)])
        assert result.exit_code == 2
        assert "changes.jsonl:1: field 'kind' must be one of model_version" in result.output

    def test_llm_diagnoser_without_configuration_says_what_to_set(self, tmp_path: Path) -> None:
        """`--diagnoser llm` without an endpoint names the environment variables to set."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        result = runner.invoke(
            app, ["diagnose", "case", str(case), "--diagnoser", "llm"], env={"HOMEOSTAT_LLM_BASE_URL": ""}
        )
        assert result.exit_code != 0
        assert "HOMEOSTAT_LLM_BASE_URL" in result.output


class TestBench:
    def test_bench_reports_accuracy_per_group_and_never_reads_truth_first(self, tmp_path: Path) -> None:
        """On a labelled set the bench prints AC@1 per group and writes per-case ranks to JSON."""
        export(fleet.bad_prompt_deploy(), tmp_path / "set" / "a", truth=fleet.SC)
        export(fleet.upstream_dependency(), tmp_path / "set" / "b", truth=fleet.KB)
        export(fleet.capacity(), tmp_path / "set" / "c", truth=fleet.SC)  # wrong label on purpose
        out = tmp_path / "bench.json"
        result = runner.invoke(app, ["diagnose", "bench", "--cases", str(tmp_path / "set"), "--json", str(out)])
        assert result.exit_code == 0, result.output
        summary = json.loads(out.read_text())["summary"]
        overall = next(row for row in summary if row["group"] == "all")
        assert (overall["n"], overall["ac1"]) == (3, pytest.approx(2 / 3, abs=1e-3))
        assert "all" in result.output

    def test_bench_on_a_folder_without_cases_is_an_error(self, tmp_path: Path) -> None:
        """An empty folder is reported, not scored as zero."""
        result = runner.invoke(app, ["diagnose", "bench", "--cases", str(tmp_path)])
        assert result.exit_code == 2
        assert "no case folders" in result.output


class TestSystemTopology:
    """`--topology` on `case`, `bench` and `train`: a system's call graph for exports that lack one."""

    @staticmethod
    def _without_topology(case: Path) -> Path:
        system = case.parent / f"{case.name}-system.json"
        (case / "topology.json").rename(system)
        return system

    @staticmethod
    def _top(case: Path, *extra: str) -> tuple[str, str]:
        result = runner.invoke(app, ["diagnose", "case", str(case), "--json", *extra])
        assert result.exit_code == 0, result.output
        first = json.loads(result.output)["ranked"][0]
        return first["service"], first["cause"]

    def test_a_case_without_its_own_topology_uses_the_system_topology(self, tmp_path: Path) -> None:
        """The upstream callee is named only once the system's call graph is supplied."""
        case = export(fleet.upstream_dependency(), tmp_path / "c")
        system = self._without_topology(case)
        assert self._top(case) != (fleet.KB, "upstream_dependency")
        assert self._top(case, "--topology", str(system)) == (fleet.KB, "upstream_dependency")

    def test_the_best_covering_topology_is_chosen_and_one_covering_under_half_is_not(self) -> None:
        """Among several systems' graphs a case takes the one naming most of its services, never one under half."""
        case = {"a", "b", "c", "d"}
        shop = SystemTopology(Path("shop.json"), frozenset({"a", "b", "c", "x"}))
        trains = SystemTopology(Path("trains.json"), frozenset({"a", "b", "c", "d", "y", "z"}))
        stray = SystemTopology(Path("stray.json"), frozenset({"a", "q", "r"}))
        assert system_topology_for(case, [shop, trains, stray]) == Path("trains.json")
        assert system_topology_for(case, [shop, stray]) == Path("shop.json")
        assert system_topology_for(case, [stray]) is None

    def test_the_case_own_topology_wins_over_the_system_one(self, tmp_path: Path) -> None:
        """A folder's topology.json is used even when a system topology is given."""
        case = export(fleet.upstream_dependency(), tmp_path / "c")
        backwards = tmp_path / "backwards.json"
        backwards.write_text(json.dumps({"edges": [[fleet.KB, fleet.SC], [fleet.KB, "doc-summarizer"]]}))
        assert self._top(case, "--topology", str(backwards)) == (fleet.KB, "upstream_dependency")
        (case / "topology.json").unlink()
        assert self._top(case, "--topology", str(backwards)) != (fleet.KB, "upstream_dependency")

    def test_a_malformed_system_topology_is_refused_with_its_file_named(self, tmp_path: Path) -> None:
        """A bad `--topology` file stops the bench before any case is diagnosed, naming file, line and edge."""
        export(fleet.upstream_dependency(), tmp_path / "set" / "b", truth=fleet.KB)
        bad = tmp_path / "bad.json"
        bad.write_text('{"edges": [\n  ["a", "b"],\n  ["c"]\n]}\n')
        result = runner.invoke(app, ["diagnose", "bench", "--cases", str(tmp_path / "set"), "--topology", str(bad)])
        assert result.exit_code == 2
        assert f"{bad}:3: edges[1]: must be [caller, callee] strings" in result.output

    def test_every_shipped_system_topology_loads_and_names_each_edge_once(self) -> None:
        """The call graphs under runtime/topologies/ parse, have no self-calls and no repeated edges."""
        shipped = sorted(Path(__file__).resolve().parents[2].joinpath("runtime", "topologies").glob("*.json"))
        assert shipped, "no system topologies shipped"
        for path in shipped:
            edges = [tuple(edge) for edge in json.loads(path.read_text())["edges"]]
            assert len(edges) == len(set(edges)), path
            assert all(caller != callee for caller, callee in edges), path
            assert SystemTopology.load(path).services == {s for edge in edges for s in edge}
