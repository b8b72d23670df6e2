"""The daemon's configuration, ``homeostat.yaml``: validated at start, errors name file, line and key.

Every section is a pydantic model with unknown keys refused (a typo is an error, not a silently
ignored setting). Relative paths are resolved against the config file's folder. Strings may
reference environment variables as ``${NAME}`` so secrets (webhook URLs) stay out of the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain import ActionName, IncidentState
from policies.yaml_lines import ConfigFileError, ConfigIssue, load_yaml_with_lines, validation_issues
from runtime.topology_file import load_topology_file
from tools import SecretRef, WebhookTarget

__all__ = [
    "AlertmanagerSourceConfig",
    "ApiConfig",
    "AuthConfig",
    "ConfigFileError",
    "DiagnoserConfig",
    "HaConfig",
    "HomeostatConfig",
    "IntervalsConfig",
    "JsonlSourceConfig",
    "NotificationsConfig",
    "PromQueryConfig",
    "PrometheusSourceConfig",
    "PushSourceConfig",
    "SignedWebhookConfig",
    "SimulatorSourceConfig",
    "SourceConfig",
    "ToolsConfig",
    "WebhookTargetConfig",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


HttpUrlText = Annotated[str, AfterValidator(_http_url)]


# -- sources ---------------------------------------------------------------------------------


class PromQueryConfig(_Section):
    """One PromQL expression read as one signal."""

    signal: str = Field(min_length=1)
    promql: str = Field(min_length=1)
    service: str | None = Field(default=None, description="fixed service; else taken from service_label")
    service_label: str = "service"


class _SourceBase(_Section):
    name: str | None = Field(default=None, description="name shown in health and metrics; defaults to the type")
    stale_after_s: float = Field(default=120.0, gt=0, description="no successful poll for this long = stale")
    max_backoff_s: float = Field(default=300.0, gt=0, description="cap of the exponential backoff after failures")


class PrometheusSourceConfig(_SourceBase):
    type: Literal["prometheus"]
    url: HttpUrlText
    queries: list[PromQueryConfig] = Field(min_length=1)
    mode: Literal["range", "instant"] = "range"
    step_s: float = Field(default=15.0, gt=0, description="range-query resolution, seconds")
    lookback_s: float = Field(
        default=300.0,
        gt=0,
        description="least history fetched on the first poll, seconds; more when the detectors' warm-up or an"
        " open incident's pre-onset baseline needs it",
    )
    max_history_s: float = Field(
        default=21600.0, gt=0, description="no read (first poll, catch-up after an outage) goes further back, seconds"
    )
    max_points_per_query: int = Field(
        default=11_000, ge=2, description="points per series in one query_range call (Prometheus refuses > 11,000)"
    )
    interval_s: float = Field(default=15.0, gt=0, description="seconds between polls")
    timeout_s: float = Field(default=5.0, gt=0)


class PushSourceConfig(_SourceBase):
    type: Literal["push"]
    enabled: bool = True
    max_buffered: int = Field(default=10_000, ge=1, description="items buffered before 429 backpressure")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After sent with 429")


class AlertmanagerSourceConfig(_SourceBase):
    type: Literal["alertmanager"]
    enabled: bool = True
    service_label: str = "service"


class JsonlSourceConfig(_SourceBase):
    type: Literal["jsonl"]
    path: Path
    from_end: bool = Field(default=False, description="skip lines already in the file at start")
    interval_s: float = Field(default=1.0, gt=0)


class SimulatorSourceConfig(_SourceBase):
    type: Literal["simulator"]
    url: HttpUrlText
    interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)


SourceConfig = Annotated[
    PrometheusSourceConfig | PushSourceConfig | AlertmanagerSourceConfig | JsonlSourceConfig | SimulatorSourceConfig,
    Field(discriminator="type"),
]


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        # Never echo the value: whoever wrote a key here instead of a variable name leaked it once already.
        raise ValueError(
            "must be the NAME of an environment variable (letters, digits, underscores), not a secret itself"
        )
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


# -- other sections --------------------------------------------------------------------------


def _remediations() -> list[ActionName]:
    return [a for a in ActionName if a is not ActionName.ESCALATE]


class WebhookTargetConfig(_Section):
    """A generic HTTP endpoint remediations go to: it serves the targets `serves` names (a name or
    glob, e.g. ``llm-*``; default: its key in `tools.webhook_targets`) and the `actions` listed.

    Secrets (an Authorization header, a URL holding a token) are named by environment variable
    (`headers_env`, `url_env`), never written here; `headers` are literal, non-secret headers.
    """

    serves: str | None = Field(
        default=None, min_length=1, description="target name or glob served (e.g. 'llm-*'); default: this entry's key"
    )
    url: HttpUrlText | None = Field(default=None, description="the endpoint (or url_env)")
    url_env: EnvName | None = Field(default=None, description="NAME of the variable holding the URL, if it is secret")
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict, description="non-secret literal headers")
    headers_env: dict[str, EnvName] = Field(
        default_factory=dict, description="header -> NAME of the environment variable holding its value"
    )
    actions: list[ActionName] = Field(
        default_factory=_remediations,
        min_length=1,
        description="actions sent here (default: every remediation; escalate always pages)",
    )
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    body: dict[str, Any] | None = Field(default=None, description="JSON body template (tools.WebhookTarget)")
    status_url: str | None = Field(default=None, description="GET with {idempotency_key}: 2xx done, 404 not done")
    retries: int = Field(default=0, ge=0, le=10)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookTargetConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' or 'url_env'")
        overlap = {h.lower() for h in self.headers} & {h.lower() for h in self.headers_env}
        if overlap:
            raise ValueError(f"headers set both in 'headers' and 'headers_env': {sorted(overlap)}")
        self.target("validation")  # the tool's own checks (body placeholders, status_url) at load time
        return self

    def target(self, key: str) -> WebhookTarget:
        """The tool-layer `WebhookTarget` for the entry `key`: it serves `serves`, else the target named `key`."""
        fields: dict[str, Any] = {
            "name": self.serves or key,
            "actions": tuple(self.actions),
            "url": self.url,
            "url_secret": SecretRef(env=self.url_env) if self.url_env else None,
            "method": self.method,
            "headers": dict(self.headers),
            "secret_headers": {h: SecretRef(env=v) for h, v in self.headers_env.items()},
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "status_url": self.status_url,
        }
        if self.body is not None:
            fields["body"] = self.body
        try:
            return WebhookTarget(**fields)
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc'])) or 'target'}: {e['msg']}" for e in exc.errors()]
            raise ValueError("; ".join(problems)) from None


class ToolsConfig(_Section):
    allowed_targets: list[str] = Field(default_factory=list, description="services/providers tools may act on")
    webhook_targets: dict[str, WebhookTargetConfig] = Field(default_factory=dict)
    simulator_url: HttpUrlText | None = Field(default=None, description="remediate against the HTTP simulator")
    dry_run: bool = False


class DiagnoserConfig(_Section):
    """Which diagnoser the loop uses: the deterministic ranking, or an LLM over an OpenAI-compatible API.

    The LLM diagnoser falls back to the deterministic one when the model fails, times out or
    exceeds its budgets, so an LLM outage never stops the loop.
    """

    kind: Literal["deterministic", "llm"] = "deterministic"
    base_url: HttpUrlText | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. .../v1")
    model: str | None = Field(default=None, min_length=1, description="model name served at base_url")
    api_key_env: EnvName | None = Field(
        default=None, description="NAME of the environment variable holding the API key; omit for local servers"
    )
    timeout_s: float = Field(default=60.0, gt=0, description="time budget per incident, seconds")
    max_tokens_per_incident: int = Field(default=20_000, ge=1, description="token budget per incident")
    max_completion_tokens: int = Field(default=1024, ge=1, description="token cap of one model answer")
    max_tool_calls: int = Field(default=12, ge=0, description="tool calls the model may make per incident")

    @model_validator(mode="after")
    def _llm_needs_endpoint(self) -> DiagnoserConfig:
        if self.kind == "llm":
            missing = [k for k in ("base_url", "model") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"kind: llm needs {' and '.join(missing)}")
        return self


class AuthConfig(_Section):
    tokens_file: Path | None = Field(default=None, description="YAML of identities with hashed tokens")


class SignedWebhookConfig(_Section):
    """A notification webhook whose messages are HMAC-signed with the secret in environment variable `secret_env`."""

    url: HttpUrlText
    secret_env: EnvName | None = Field(
        default=None, description="NAME of the environment variable holding the HMAC signing secret"
    )


class NotificationsConfig(_Section):
    webhooks: list[HttpUrlText | SignedWebhookConfig] = Field(
        default_factory=list, description="Slack-compatible incoming-webhook URLs, or {url, secret_env} to sign"
    )
    states: list[IncidentState] = Field(
        default_factory=lambda: [
            IncidentState.AWAITING_APPROVAL,
            IncidentState.EXECUTING,
            IncidentState.FAILED,
            IncidentState.ESCALATED,
        ],
        description="incident states that send a message",
    )
    max_attempts: int = Field(default=5, ge=1)
    console_url: HttpUrlText | None = Field(default=None, description="base URL linked from messages")


class ApiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=5_000_000, ge=1024)


class IntervalsConfig(_Section):
    poll_s: float = Field(default=5.0, gt=0, description="how often sources are polled")
    approval_expiry_s: float = Field(default=10.0, gt=0, description="how often pending approvals are checked")
    verification_s: float = Field(default=30.0, gt=0, description="how often verifications run")
    checkpoint_s: float = Field(default=60.0, gt=0, description="how often detector state is saved")


class HaConfig(_Section):
    """Replicas on PostgreSQL: the leader lease (see docs/HA.md). Ignored on SQLite (one process)."""

    lease_ttl_s: float = Field(default=15.0, gt=0, description="a dead leader blocks takeover at most this long")
    lease_renew_s: float = Field(default=5.0, gt=0, description="renewal / acquisition attempt period, <= ttl/2")
    lease_margin_s: float = Field(default=2.0, ge=0, description="the leader stops acting this long before expiry")

    @model_validator(mode="after")
    def _consistent(self) -> HaConfig:
        if self.lease_renew_s * 2 > self.lease_ttl_s:
            raise ValueError(f"lease_renew_s ({self.lease_renew_s}) must be at most half of lease_ttl_s")
        if self.lease_margin_s + self.lease_renew_s >= self.lease_ttl_s:
            raise ValueError("lease_margin_s + lease_renew_s must be below lease_ttl_s")
        return self


def database_shown(url: str) -> str:
    """A database URL as it may be printed: everything before the last '@' (user and password) dropped."""
    return url.rsplit("@", maxsplit=1)[-1]


class HomeostatConfig(_Section):
    """The whole ``homeostat.yaml``."""

    database_url: str = "sqlite:///homeostat.db"
    constitution: Path = Path("constitution.yaml")
    sources: list[SourceConfig] = Field(default_factory=list)
    detection_overrides: Path | None = None
    topology: Path | None = Field(
        default=None,
        description="the fleet's services, providers, versions and call graph, YAML or JSON"
        " (runtime/topology_file.py); a simulator source's GET /topology overrides it service by service",
    )
    tools: ToolsConfig = ToolsConfig()
    auth: AuthConfig = AuthConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    api: ApiConfig = ApiConfig()
    intervals: IntervalsConfig = IntervalsConfig()
    ha: HaConfig = HaConfig()
    diagnoser: DiagnoserConfig = DiagnoserConfig()
    grace_period_s: float = Field(default=10.0, ge=0, description="shutdown: time in-flight work gets to finish")

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or re.match(r"^postgres(ql)?(\+\w+)?://", value)):
            shown = database_shown(value)
            raise ValueError(f"must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB, got {shown!r}")
        return value

    @model_validator(mode="after")
    def _unique_source_names(self) -> HomeostatConfig:
        seen: set[str] = set()
        for i, source in enumerate(self.sources):
            name = source.name or source.type
            if name in seen:
                raise ValueError(f"sources[{i}]: two sources are named {name!r}; give each a distinct 'name'")
            seen.add(name)
        return self

    def source_name(self, index: int) -> str:
        source = self.sources[index]
        return source.name or source.type


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(data: Any, path: tuple[str | int, ...], missing: list[tuple[tuple[str | int, ...], str]]) -> Any:
    if isinstance(data, dict):
        return {k: _expand_env(v, (*path, k), missing) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_env(v, (*path, i), missing) for i, v in enumerate(data)]
    if isinstance(data, str):

        def sub(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value is None:
                missing.append((path, match.group(1)))
                return ""
            return value

        return _ENV.sub(sub, data)
    return data


def _resolve_paths(config: HomeostatConfig, base: Path) -> HomeostatConfig:
    def rel(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    sources = [
        s.model_copy(update={"path": rel(s.path)}) if isinstance(s, JsonlSourceConfig) else s for s in config.sources
    ]
    return config.model_copy(
        update={
            "constitution": rel(config.constitution),
            "detection_overrides": rel(config.detection_overrides),
            "topology": rel(config.topology),
            "auth": config.auth.model_copy(update={"tokens_file": rel(config.auth.tokens_file)}),
            "sources": sources,
        }
    )


def _secret_env_names(config: HomeostatConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """(config key, variable name) of every secret the config names by environment variable."""
    names: list[tuple[tuple[str | int, ...], str]] = []
    if config.diagnoser.kind == "llm" and config.diagnoser.api_key_env is not None:
        names.append((("diagnoser", "api_key_env"), config.diagnoser.api_key_env))
    for name, target in config.tools.webhook_targets.items():
        where: tuple[str | int, ...] = ("tools", "webhook_targets", name)
        if target.url_env is not None:
            names.append(((*where, "url_env"), target.url_env))
        names.extend(((*where, "headers_env", header), env) for header, env in target.headers_env.items())
    for i, hook in enumerate(config.notifications.webhooks):
        if isinstance(hook, SignedWebhookConfig) and hook.secret_env is not None:
            names.append((("notifications", "webhooks", i, "secret_env"), hook.secret_env))
    return names


def parse_config(
    text: str, source: str = "homeostat.yaml", *, base_dir: Path | None = None, check_files: bool = False
) -> HomeostatConfig:
    """Validate config text; raises `ConfigFileError` listing every problem as ``file:LINE: key: message``.

    With `check_files`, the files the daemon reads at start (constitution, tokens file, detection
    overrides, topology) must exist, and a topology file must be valid (its issues name its own
    file and lines).
    """
    data, locate = load_yaml_with_lines(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError([ConfigIssue(source, 1, (), "the config must be a mapping of sections")])
    missing: list[tuple[tuple[str | int, ...], str]] = []
    data = _expand_env(data, (), missing)
    if missing:
        raise ConfigFileError(
            [ConfigIssue(source, locate(p), p, f"environment variable ${{{name}}} is not set") for p, name in missing]
        )
    try:
        config = HomeostatConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(validation_issues(exc, data, locate, source)) from exc
    config = _resolve_paths(config, base_dir or Path.cwd())
    unset = [(key, name) for key, name in _secret_env_names(config) if not os.environ.get(name)]
    if unset:
        raise ConfigFileError(
            [ConfigIssue(source, locate(key), key, f"environment variable {name} is not set") for key, name in unset]
        )
    if check_files:
        required: list[tuple[tuple[str | int, ...], Path | None]] = [
            (("constitution",), config.constitution),
            (("auth", "tokens_file"), config.auth.tokens_file),
            (("detection_overrides",), config.detection_overrides),
            (("topology",), config.topology),
        ]
        issues = [
            ConfigIssue(source, locate(key), key, f"file not found: {path}")
            for key, path in required
            if path is not None and not path.is_file()
        ]
        if config.topology is not None and config.topology.is_file():
            try:
                load_topology_file(config.topology)
            except ConfigFileError as exc:
                issues += exc.errors
        if issues:
            raise ConfigFileError(issues)
    return config


def load_config(path: str | Path, *, check_files: bool = True) -> HomeostatConfig:
    """Read and validate ``homeostat.yaml``; relative paths inside it are relative to its folder.

    By default the constitution, tokens file, detection overrides and topology it names must exist
    (and the topology must be valid).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigFileError([ConfigIssue(str(path), 1, (), "config file not found")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError([ConfigIssue(str(path), 1, (), f"cannot read config file: {exc}")]) from exc
    return parse_config(text, str(path), base_dir=path.resolve().parent, check_files=check_files)
