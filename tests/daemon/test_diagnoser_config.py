"""The config file's `diagnoser:` section: validated with file:line:key errors, and it decides the loop's diagnoser."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.diagnosis import DeterministicDiagnoser, LLMDiagnoser
from runtime.config import ConfigFileError, parse_config
from runtime.daemon import Daemon, build_diagnoser

REPO = Path(__file__).resolve().parents[2]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, "homeostat.yaml")
    return [str(e) for e in info.value.errors]


class TestDiagnoserSection:
    def test_default_is_deterministic(self) -> None:
        """Without a diagnoser section the loop keeps the deterministic ranking."""
        config = parse_config("", "homeostat.yaml")
        assert config.diagnoser.kind == "deterministic"
        assert isinstance(build_diagnoser(config.diagnoser), DeterministicDiagnoser)

    def test_llm_section_builds_the_llm_diagnoser_with_its_budgets(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """kind: llm with an endpoint, model, key variable and budgets gives an LLM diagnoser using them."""
        monkeypatch.setenv("MY_LLM_KEY", "sk-test-0123")
        config = parse_config(
            "diagnoser:\n  kind: llm\n  base_url: http://127.0.0.1:9/v1/\n  model: m\n"
            "  api_key_env: MY_LLM_KEY\n  timeout_s: 7\n  max_tokens_per_incident: 900\n",
            "homeostat.yaml",
        )
        section = config.diagnoser
        assert (section.base_url, section.model, section.api_key_env) == ("http://127.0.0.1:9/v1", "m", "MY_LLM_KEY")
        diagnoser = build_diagnoser(section)
        assert isinstance(diagnoser, LLMDiagnoser)
        assert diagnoser.name == "llm"

    def test_llm_without_endpoint_names_the_missing_keys(self) -> None:
        """kind: llm without base_url and model is refused on the diagnoser line, naming both."""
        (error,) = errors_of("api: {port: 1}\ndiagnoser:\n  kind: llm\n")
        assert error.startswith("homeostat.yaml:2: diagnoser:")
        assert "base_url" in error and "model" in error

    def test_unknown_kind_and_typo_are_refused_with_line(self) -> None:
        """A kind outside deterministic|llm and an unknown key each get file:line:key."""
        errors = errors_of("diagnoser:\n  kind: gpt\n  modle: x\n")
        assert any(e.startswith("homeostat.yaml:2: diagnoser.kind:") for e in errors), errors
        assert any(e.startswith("homeostat.yaml:3: diagnoser.modle:") for e in errors), errors

    def test_a_key_written_instead_of_a_variable_name_is_refused_without_echo(self) -> None:
        """api_key_env holding what looks like a key is refused and the value never appears in the error."""
        secret = "sk-live-abc123-def456"
        (error,) = errors_of(f"diagnoser:\n  kind: llm\n  base_url: http://h/v1\n  model: m\n  api_key_env: {secret}\n")
        assert error.startswith("homeostat.yaml:5: diagnoser.api_key_env:")
        assert "NAME of an environment variable" in error
        assert secret not in error

    def test_unset_key_variable_is_named_at_start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An api_key_env naming an unset variable fails at config load, naming the variable and line."""
        monkeypatch.delenv("ABSENT_LLM_KEY", raising=False)
        (error,) = errors_of(
            "diagnoser:\n  kind: llm\n  base_url: http://h/v1\n  model: m\n  api_key_env: ABSENT_LLM_KEY\n"
        )
        assert error.startswith("homeostat.yaml:5: diagnoser.api_key_env:")
        assert "ABSENT_LLM_KEY is not set" in error

    def test_budgets_must_be_positive(self) -> None:
        """A zero time budget or token budget is refused on its own line."""
        errors = errors_of("diagnoser:\n  timeout_s: 0\n  max_tokens_per_incident: 0\n")
        assert any(e.startswith("homeostat.yaml:2: diagnoser.timeout_s:") for e in errors), errors
        assert any(e.startswith("homeostat.yaml:3: diagnoser.max_tokens_per_incident:") for e in errors), errors


def test_daemon_hands_the_configured_diagnoser_to_the_loop(tmp_path: Path) -> None:
    """A daemon built from a config with kind: llm runs its incident graph with the LLM diagnoser."""
    config = parse_config(
        f"database_url: sqlite:///{tmp_path / 'h.db'}\nconstitution: {REPO / 'constitution.yaml'}\n"
        "diagnoser: {kind: llm, base_url: 'http://127.0.0.1:9/v1', model: m}\n",
        "homeostat.yaml",
    )
    daemon = Daemon(config)
    assert isinstance(daemon.loop.options.diagnoser, LLMDiagnoser)
