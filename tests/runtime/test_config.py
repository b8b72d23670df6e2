"""homeostat.yaml: validated at start, every error naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import (
    ConfigFileError,
    JsonlSourceConfig,
    PrometheusSourceConfig,
    load_config,
    parse_config,
)
from runtime.sources import GuardedSource, PushSource, build_sources

REPO = Path(__file__).resolve().parents[2]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, "homeostat.yaml")
    return [str(e) for e in info.value.errors]


class TestValidConfig:
    def test_shipped_example_loads_and_builds_sources(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The example config at the repo root is valid and every source in it can be built."""
        monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.example.com/T000/B000")
        monkeypatch.setenv("DEPLOYER_TOKEN", "Bearer example")
        config = load_config(REPO / "homeostat.example.yaml", check_files=False)  # tokens.yaml is per site
        assert config.constitution.is_file()
        built = build_sources(config)
        assert {g.name for g in built.guarded} == {config.source_name(i) for i in range(len(config.sources))}
        assert isinstance(built.push, PushSource)
        assert all(isinstance(g, GuardedSource) for g in built.guarded)
        assert config.notifications.webhooks == ["https://hooks.example.com/T000/B000"]

    def test_defaults_and_relative_paths(self, tmp_path: Path) -> None:
        """An empty file gives the SQLite default; relative paths resolve against the config's folder."""
        (tmp_path / "h.yaml").write_text(
            "constitution: rules/c.yaml\nsources:\n  - type: jsonl\n    path: data/t.jsonl\n"
        )
        config = load_config(tmp_path / "h.yaml", check_files=False)
        assert config.database_url == "sqlite:///homeostat.db"
        assert config.constitution == tmp_path / "rules/c.yaml"
        source = config.sources[0]
        assert isinstance(source, JsonlSourceConfig) and source.path == tmp_path / "data/t.jsonl"
        assert parse_config("").api.host == "127.0.0.1"

    def test_postgres_url_accepted(self) -> None:
        """A PostgreSQL URL is a valid database."""
        config = parse_config("database_url: postgresql://h:h@127.0.0.1:5432/h\n")
        assert config.database_url.startswith("postgresql://")


class TestConfigErrors:
    def test_typo_names_line_and_key(self) -> None:
        """A misspelt key is refused with its line and full key path."""
        text = (
            "sources:\n"
            "  - type: prometheus\n"
            "    url: http://prom:9090\n"
            "    queries:\n"
            "      - signal: error_rate\n"
            "        promql: rate(errors[5m])\n"
            "        servce: chat\n"
        )
        assert errors_of(text) == [
            "homeostat.yaml:7: sources[0].queries[0].servce: unknown key (not part of the schema; check the spelling)"
        ]

    def test_several_errors_all_reported(self) -> None:
        """Every problem is listed, each with its own line."""
        text = "api:\n  port: 70000\nintervals:\n  poll_s: 0\nnotifications:\n  webhooks: [ftp://nope]\n"
        errors = errors_of(text)
        assert errors[0].startswith("homeostat.yaml:2: api.port:")
        assert errors[1].startswith("homeostat.yaml:4: intervals.poll_s:")
        assert errors[2].startswith("homeostat.yaml:6: notifications.webhooks[0]: must be an http")

    def test_unknown_source_type_lists_choices(self) -> None:
        """A source of an unknown type is refused naming the valid types."""
        [error] = errors_of("sources:\n  - type: kafka\n")
        assert error.startswith("homeostat.yaml:2: sources[0]:")
        assert "'prometheus', 'push', 'alertmanager', 'jsonl', 'simulator'" in error

    def test_missing_required_field(self) -> None:
        """A Prometheus source without queries names the missing key."""
        [error] = errors_of("sources:\n  - type: prometheus\n    url: http://p\n")
        assert error == "homeostat.yaml:2: sources[0].queries: required key is missing"

    def test_bad_database_url_hides_password(self) -> None:
        """A wrong database URL is refused without echoing its password."""
        [error] = errors_of("database_url: mysql://root:hunter2@db/x\n")
        assert "hunter2" not in error and "database_url" in error

    def test_yaml_syntax_error_has_line(self) -> None:
        """Broken YAML is reported with the line of the problem."""
        [error] = errors_of("api:\n  host: [unclosed\n  port: 1\n")
        assert error.startswith("homeostat.yaml:") and "YAML syntax" in error

    def test_unset_environment_variable_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A ${VAR} reference to an unset variable names the variable and where it is used."""
        monkeypatch.delenv("NOPE_HOOK", raising=False)
        [error] = errors_of("notifications:\n  webhooks:\n    - ${NOPE_HOOK}\n")
        assert error == "homeostat.yaml:3: notifications.webhooks[0]: environment variable ${NOPE_HOOK} is not set"

    def test_duplicate_source_names(self) -> None:
        """Two sources with the same name are refused (health and metrics are keyed by name)."""
        [error] = errors_of("sources:\n  - type: push\n  - type: push\n")
        assert "two sources are named 'push'" in error

    def test_files_named_must_exist(self, tmp_path: Path) -> None:
        """A constitution or tokens file that does not exist is reported at its key's line, resolved path included."""
        (tmp_path / "h.yaml").write_text(
            "database_url: sqlite:///x.db\nconstitution: c.yaml\nauth:\n  tokens_file: t.yaml\n"
        )
        with pytest.raises(ConfigFileError) as info:
            load_config(tmp_path / "h.yaml")
        assert [str(e) for e in info.value.errors] == [
            f"{tmp_path}/h.yaml:2: constitution: file not found: {tmp_path}/c.yaml",
            f"{tmp_path}/h.yaml:4: auth.tokens_file: file not found: {tmp_path}/t.yaml",
        ]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A config path that does not exist is a clear error naming the path."""
        with pytest.raises(ConfigFileError, match="config file not found"):
            load_config(tmp_path / "nope.yaml")


def test_source_config_types_are_exported() -> None:
    """The typed source entries are part of the config's public surface."""
    config = parse_config(
        "sources:\n  - type: prometheus\n    url: http://p\n    queries:\n      - {signal: s, promql: q}\n"
    )
    assert isinstance(config.sources[0], PrometheusSourceConfig)
