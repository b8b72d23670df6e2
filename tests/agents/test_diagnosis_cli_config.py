"""`homeostat diagnose --config homeostat.yaml`: the offline command builds its diagnoser from the
daemon's `diagnoser:` section with the daemon's builder; the HOMEOSTAT_LLM_* variables still work."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli import app
from tests.agents import test_diagnosis_fleet as fleet
from tests.agents.test_diagnosis_cli import export
from tests.agents.test_llm_openai_loopback import ANSWER, ScriptedServer

runner = CliRunner()
KEY_ENV = "HOMEOSTAT_TEST_LOOPBACK_KEY"
NO_LLM_ENV = {"HOMEOSTAT_LLM_BASE_URL": "", "HOMEOSTAT_LLM_MODEL": ""}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer([{"role": "assistant", "content": json.dumps(ANSWER)}])
    srv.thread.start()
    yield srv
    srv.server.shutdown()
    srv.server.server_close()


def _config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


class TestConfigFile:
    def test_an_llm_section_sends_the_incident_to_its_endpoint(self, tmp_path: Path, server: ScriptedServer) -> None:
        """kind: llm in the config makes the command ask that endpoint, with the key from the named variable."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        config = _config(
            tmp_path / "homeostat.yaml",
            f"diagnoser:\n  kind: llm\n  base_url: {server.url}\n  model: loopback-model\n"
            f"  api_key_env: {KEY_ENV}\n  timeout_s: 20\n",
        )
        result = runner.invoke(
            app,
            ["diagnose", "case", str(case), "--config", str(config), "--json"],
            env={**NO_LLM_ENV, KEY_ENV: "sk-loopback-secret-123456"},
        )
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert (out["diagnosis"]["diagnoser"], out["diagnosis"]["service"]) == ("llm", fleet.SC)
        assert len(server.requests) == 1 and server.requests[0]["model"] == "loopback-model"
        assert server.auth[0] == "Bearer sk-loopback-secret-123456"
        confidences = [r["confidence"] for r in out["ranked"]]
        assert all(a >= b for a, b in itertools.pairwise(confidences))

    def test_a_deterministic_section_keeps_the_deterministic_diagnoser(self, tmp_path: Path) -> None:
        """Without kind: llm the config gives the deterministic diagnosis and no network call."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        config = _config(tmp_path / "homeostat.yaml", "diagnoser:\n  kind: deterministic\n")
        result = runner.invoke(app, ["diagnose", "case", str(case), "--config", str(config), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["diagnosis"]["diagnoser"] == "deterministic"

    def test_asking_for_llm_with_a_config_that_has_no_endpoint_names_what_is_missing(self, tmp_path: Path) -> None:
        """--diagnoser llm with a config lacking base_url and model says so and names the file."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        config = _config(tmp_path / "homeostat.yaml", "diagnoser:\n  kind: deterministic\n")
        result = runner.invoke(
            app, ["diagnose", "case", str(case), "--diagnoser", "llm", "--config", str(config)], env=NO_LLM_ENV
        )
        assert result.exit_code == 2
        assert "homeostat.yaml: its diagnoser section has no base_url and model" in result.output

    def test_a_bad_config_is_refused_with_file_line_and_key(self, tmp_path: Path) -> None:
        """A typo in the diagnoser section is reported as file:line: key, exit code 2."""
        case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
        config = _config(tmp_path / "homeostat.yaml", "diagnoser:\n  kind: llm\n  modle: m\n")
        result = runner.invoke(app, ["diagnose", "case", str(case), "--config", str(config)])
        assert result.exit_code == 2
        assert "homeostat.yaml:3: diagnoser.modle" in result.output


def test_the_environment_variables_still_configure_the_llm(tmp_path: Path, server: ScriptedServer) -> None:
    """Without --config, HOMEOSTAT_LLM_BASE_URL and HOMEOSTAT_LLM_MODEL still reach the endpoint."""
    case = export(fleet.bad_prompt_deploy(), tmp_path / "c")
    result = runner.invoke(
        app,
        ["diagnose", "case", str(case), "--diagnoser", "llm", "--json"],
        env={"HOMEOSTAT_LLM_BASE_URL": server.url, "HOMEOSTAT_LLM_MODEL": "loopback-model"},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["diagnosis"]["diagnoser"] == "llm"
    assert len(server.requests) == 1
