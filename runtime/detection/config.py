"""Detection configuration: per-signal detector policies from a YAML file, overridable per service.

The shipped `defaults.yaml` is always loaded first; a user file is merged over it key by key
(`defaults`, `unknown_signals`, `signals.<signal>`, `services.<service>.signals.<signal>`; `budgets` replaces).
A bad file raises `DetectionConfigError` naming the file, line and field.
"""

from __future__ import annotations

import copy
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from domain import BAD_DIRECTION, Direction, bad_direction

DEFAULTS_PATH = Path(__file__).with_name("defaults.yaml")

DetectorName = Literal["robust", "adwin", "page_hinkley", "likelihood"]
Forecaster = Literal["last", "level", "season", "week"]


class DetectionConfigError(ValueError):
    """A detection config file or value is invalid; the message names where and what."""


class _PolicyError(ValueError):
    """A per-series override is invalid; `dotted` is where it sits in the config tree."""

    def __init__(self, dotted: str, message: str) -> None:
        super().__init__(f"{dotted}: {message}")
        self.dotted = dotted
        self.message = message


class SignalPolicy(BaseModel):
    """How one series is watched. Units are samples unless the name ends in `_s` (seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detectors: tuple[DetectorName, ...] = ("robust", "adwin")
    direction: Direction | None = Field(default=None, description="override the domain's bad direction")
    warmup: int = Field(default=30, ge=5, le=100_000)
    baseline_alpha: float = Field(default=0.02, gt=0.0, le=1.0)
    cusum_k: float = Field(default=0.5, ge=0.0)
    cusum_h: float = Field(default=10.0, gt=0.0)
    z_clip: float = Field(default=5.0, gt=0.0)
    spike_z: float = Field(default=10.0, gt=0.0)
    min_rel_change: float = Field(default=0.1, ge=0.0)
    min_abs_change: float = Field(default=0.0, ge=0.0)
    scale_floor_rel: float = Field(default=0.01, ge=0.0)
    scale_floor_abs: float = Field(default=1e-9, gt=0.0)
    counts: bool = Field(default=False, description="values are event counts: sigma >= sqrt(mean)")
    cooldown: int = Field(default=60, ge=1)
    surprise: float = Field(default=0.0, ge=0.0, description="a shift/spike must beat this x the series' past peaks")
    surprise_halflife: float = Field(default=2000.0, gt=0.0, description="samples for a past peak to count half")
    refractory: int = Field(default=10, ge=0, description="samples an alarm lasts at least, even if it recovers")
    recover_z: float = Field(default=2.0, gt=0.0)
    adwin_delta: float = Field(default=0.0002, gt=0.0, lt=1.0)
    adwin_block: int = Field(default=16, ge=1, le=1024, description="ADWIN sees the mean of each block of this many")
    confirm_z: float = Field(default=3.0, ge=0.0)
    ph_threshold: float = Field(default=25.0, gt=0.0)
    crit_z: float = Field(default=10.0, gt=0.0)
    crit_rel: float = Field(default=0.5, ge=0.0)
    stale_after_s: float = Field(default=60.0, gt=0.0)
    stale_factor: float = Field(default=6.0, gt=0.0)
    trend_horizon_s: float = Field(default=7200.0, gt=0.0)
    trend_confirm: int = Field(default=6, ge=1)
    # Forecast-error anomaly likelihood (detector "likelihood"; runtime/detection/likelihood.py)
    lik_forecasters: tuple[Forecaster, ...] = Field(default=("level", "season", "week"), min_length=1)
    lik_combine: Literal["mean", "min", "best"] = "best"
    lik_level_alpha: float = Field(default=0.02, gt=0.0, le=1.0, description="EWMA weight of the level forecast")
    lik_error_alpha: float = Field(default=0.003, gt=0.0, le=1.0, description="EWMA weight of error scales")
    lik_window: int = Field(default=20, ge=1, le=1000, description="samples in the recent average of raw scores")
    lik_history_alpha: float = Field(default=0.001, gt=0.0, le=1.0, description="EWMA weight of the history")
    lik_min_history: int = Field(default=400, ge=0, description="averages seen before the first alarm")
    lik_tail: float = Field(default=1e-4, gt=0.0, lt=0.5, description="alarm when the recent average is this unlikely")
    lik_cooldown: int = Field(default=500, ge=0, description="samples after a likelihood alarm with no other one")
    lik_season_s: float = Field(default=86400.0, gt=0.0, description="period of the seasonal forecaster, seconds")
    lik_season_alpha: float = Field(default=1.0, gt=0.0, le=1.0, description="EWMA weight of a seasonal bin")
    lik_season_bins: int = Field(default=288, ge=1, le=100_000, description="at most this many bins per period")
    lik_week_bins: int = Field(default=2016, ge=1, le=100_000, description="at most this many bins per week")
    lik_surprise: float = Field(default=0.0, ge=0.0, description="the average must also beat this x its decayed peak")
    lik_surprise_halflife: float = Field(default=500.0, gt=0.0)
    lik_quiet: int = Field(default=100, ge=0, description="samples after a shift/spike with no other one")
    slo_objective: float | None = Field(default=None, gt=0.0, lt=1.0, description="e.g. 0.99 for error_rate")
    slo_max: float | None = None
    slo_min: float | None = None

    @model_validator(mode="after")
    def _coherent(self) -> SignalPolicy:
        if self.z_clip <= self.cusum_k:
            raise ValueError(f"z_clip ({self.z_clip}) must exceed cusum_k ({self.cusum_k})")
        if self.slo_min is not None and self.slo_max is not None and self.slo_min >= self.slo_max:
            raise ValueError(f"slo_min ({self.slo_min}) must be below slo_max ({self.slo_max})")
        return self

    def watched_direction(self, signal: str) -> Direction:
        return self.direction if self.direction is not None else bad_direction(signal)


class BudgetSpec(BaseModel):
    """A spend budget for one service or one team label, per day or per (30-day) month."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str | None = None
    team: str | None = None
    period: Literal["daily", "monthly"] = "daily"
    limit: float = Field(gt=0.0)
    unit: Literal["tokens", "cost"] = "tokens"
    warn_at: float = Field(default=1.0, gt=0.0, description="warn when projected spend >= warn_at x limit")

    @model_validator(mode="after")
    def _one_scope(self) -> BudgetSpec:
        if (self.service is None) == (self.team is None):
            raise ValueError("a budget names exactly one of `service` or `team`")
        return self

    @property
    def scope(self) -> str:
        return f"service:{self.service}" if self.service is not None else f"team:{self.team}"


class ServiceOverrides(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    signals: dict[str, dict[str, Any]] = Field(default_factory=dict)
    team: str | None = None


class DetectionConfig(BaseModel):
    """The whole detection configuration; `policy_for(service, signal)` resolves one series."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    defaults: dict[str, Any] = Field(default_factory=dict)
    signals: dict[str, dict[str, Any]] = Field(default_factory=dict)
    unknown_signals: dict[str, Any] = Field(
        default_factory=dict, description="overrides for signals neither in `signals` nor in the domain's list"
    )
    services: dict[str, ServiceOverrides] = Field(default_factory=dict)
    budgets: tuple[BudgetSpec, ...] = ()
    max_series: int = Field(default=200_000, ge=1, description="series beyond this are dropped, not tracked")

    @model_validator(mode="after")
    def _overrides_valid(self) -> DetectionConfig:
        # Build every policy once so a bad key or value fails at load, not at the first sample.
        _build_policy(self.defaults, (), "defaults")
        _build_policy(self.defaults, (self.unknown_signals,), "unknown_signals")
        for signal, override in self.signals.items():
            _build_policy(self.defaults, (override,), f"signals.{signal}")
        for service, svc in self.services.items():
            for signal, override in svc.signals.items():
                _build_policy(
                    self.defaults,
                    (self._signal_layer(signal), override),
                    f"services.{service}.signals.{signal}",
                )
        return self

    @cached_property
    def _cache(self) -> dict[tuple[str, str], SignalPolicy]:
        return {}

    def _signal_layer(self, signal: str) -> dict[str, Any]:
        if signal in self.signals:
            return self.signals[signal]
        return {} if signal in BAD_DIRECTION else self.unknown_signals

    def policy_for(self, service: str, signal: str) -> SignalPolicy:
        key = (service, signal)
        cached = self._cache.get(key)
        if cached is None:
            svc = self.services.get(service)
            layers = (self._signal_layer(signal), svc.signals.get(signal, {}) if svc else {})
            cached = self._cache[key] = _build_policy(self.defaults, layers, f"{service}/{signal}")
        return cached


def _build_policy(defaults: dict[str, Any], layers: tuple[dict[str, Any], ...], where: str) -> SignalPolicy:
    merged = dict(defaults)
    for layer in layers:
        merged.update(layer)
    try:
        return SignalPolicy(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise _PolicyError(f"{where}.{field}" if field else where, first["msg"]) from None


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap | dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq | list):
        return [_plain(v) for v in node]
    return node


def _read_yaml(path: Path) -> CommentedMap:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DetectionConfigError(f"{path}: cannot read detection config ({exc.strerror})") from None
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise DetectionConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise DetectionConfigError(f"{path}:1: the top level must be a mapping, got {type(data).__name__}")
    return data


def _line_of(root: CommentedMap, dotted: str) -> int | None:
    """The 1-based line of the deepest node on `dotted` that exists in the YAML tree."""
    node: Any = root
    line: int | None = None
    for part in dotted.split("."):
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and part.isdigit() and int(part) < len(node):
            line = node.lc.item(int(part))[0] + 1
            node = node[int(part)]
        else:
            break
    return line


def _merge(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.setdefault("defaults", {}).update(user.get("defaults") or {})
    out.setdefault("unknown_signals", {}).update(user.get("unknown_signals") or {})
    for signal, override in (user.get("signals") or {}).items():
        if not isinstance(override, dict):
            out.setdefault("signals", {})[signal] = override  # let validation name it
            continue
        out.setdefault("signals", {}).setdefault(signal, {}).update(override)
    for service, svc in (user.get("services") or {}).items():
        out.setdefault("services", {})[service] = svc
    for key, value in user.items():
        if key not in {"defaults", "unknown_signals", "signals", "services"}:
            out[key] = value
    return out


def _validate(data: dict[str, Any], path: Path | None, root: CommentedMap | None) -> DetectionConfig:
    where = str(path) if path else "detection config"
    try:
        return DetectionConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, _PolicyError):
            dotted, message = cause.dotted, cause.message
        else:
            dotted, message = ".".join(str(p) for p in first["loc"]), first["msg"]
        line = _line_of(root, dotted) if root is not None else None
        at = f"{where}:{line}" if line else where
        raise DetectionConfigError(f"{at}: {dotted or '(top level)'}: {message}") from None


def load_detection_config(path: str | Path | None = None) -> DetectionConfig:
    """The shipped defaults, with the file at `path` (if any) merged over them."""
    shipped = _plain(_read_yaml(DEFAULTS_PATH))
    if path is None:
        return _validate(shipped, DEFAULTS_PATH, None)
    path = Path(path)
    root = _read_yaml(path)
    return _validate(_merge(shipped, _plain(root)), path, root)


def config_from_dict(overrides: dict[str, Any]) -> DetectionConfig:
    """The shipped defaults with `overrides` (same shape as the YAML file) merged over them."""
    return _validate(_merge(_plain(_read_yaml(DEFAULTS_PATH)), overrides), None, None)
