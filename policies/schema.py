"""The shape of constitution.yaml, as pydantic models: what operators may write, and what each key means.

Every model forbids unknown keys, so a misspelt key is an error with its line rather than a rule
that silently never matches. `ConstitutionFile.model_json_schema()` is what
`homeostat constitution schema` prints for editors.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from domain import ActionName, ApprovalRequirement, Cause, OnTimeout, Verdict

# --------------------------------------------------------------------------------------------
# Small value types
# --------------------------------------------------------------------------------------------

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)


def parse_duration(value: Any) -> float:
    """'30m', '1h30m', '2d', '45s' or a number of seconds -> seconds (float, > 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30m' or '2h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not value.strip() or match is None or not any(match.groups()):
            raise ValueError(f"expected a duration like '90s', '30m', '2h' or '1d', got {value!r}")
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    else:
        raise ValueError(f"expected a duration like '30m' or '2h', got {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?d)?(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?$"},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "a duration: '90s', '30m', '2h', '1d', '1h30m', or seconds as a number",
        }
    ),
]


def _one_or_many(value: Any) -> Any:
    if isinstance(value, str):
        return (value,)
    return _nonempty(value)


def _nonempty(value: Any) -> Any:
    if isinstance(value, list | tuple) and not value:
        raise ValueError("an empty list here would match nothing; give at least one item or drop the key")
    return value


NonEmpty = BeforeValidator(_nonempty)


def _patterns_json_schema(description: str, enum: list[str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "string"}
    if enum is not None:
        item = {"type": "string", "examples": enum}
    return {
        "anyOf": [item, {"type": "array", "items": item, "minItems": 1}],
        "description": description,
    }


def _check_action_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    known = [a.value for a in ActionName]
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in known):
            raise ValueError(f"{pattern!r} matches no catalog action (known: {', '.join(known)})")
    return patterns


def _check_globs(patterns: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in patterns:
        if not pattern.strip():
            raise ValueError("an empty pattern matches nothing; use '*' to match everything")
    return patterns


def _check_causes(causes: tuple[str, ...]) -> tuple[str, ...]:
    known = [c.value for c in Cause]
    for cause in causes:
        if cause not in known:
            raise ValueError(f"unknown cause {cause!r} (known: {', '.join(known)})")
    return causes


ActionPatterns = Annotated[
    tuple[str, ...],
    BeforeValidator(_one_or_many),
    AfterValidator(_check_action_patterns),
    WithJsonSchema(
        _patterns_json_schema("catalog action names or globs, e.g. rollback_*", [a.value for a in ActionName])
    ),
]
GlobPatterns = Annotated[
    tuple[str, ...],
    BeforeValidator(_one_or_many),
    AfterValidator(_check_globs),
    WithJsonSchema(_patterns_json_schema("names or shell-style globs (* ? [abc]), e.g. payments-*")),
]
CauseNames = Annotated[
    tuple[str, ...],
    BeforeValidator(_one_or_many),
    AfterValidator(_check_causes),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": [c.value for c in Cause]},
                {"type": "array", "items": {"type": "string", "enum": [c.value for c in Cause]}, "minItems": 1},
            ],
            "description": "root causes from the fixed taxonomy",
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------


class Range(_Strict):
    """A closed interval [min, max] on a value in 0..1 (confidence, blast radius)."""

    min: float | None = Field(default=None, ge=0.0, le=1.0, description="inclusive lower bound")
    max: float | None = Field(default=None, ge=0.0, le=1.0, description="inclusive upper bound")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give at least one of min, max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max}); nothing would match")
        return self

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"in [{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f">= {self.min:g}"
        return f"<= {self.max:g}"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


_WEEKDAYS = list(Weekday)


def _parse_weekdays(value: Any) -> Any:
    """Accept 'mon-fri', ['sat', 'sun'], 'Mon', 'monday'."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return value
    _nonempty(value)
    out: list[Any] = []
    for item in value:
        if not isinstance(item, str):
            out.append(item)
            continue
        text = item.strip().lower()
        if "-" in text:
            lo, _, hi = text.partition("-")
            lo, hi = lo.strip()[:3], hi.strip()[:3]
            names = [d.value for d in _WEEKDAYS]
            if lo not in names or hi not in names:
                raise ValueError(f"bad weekday range {item!r}; write e.g. 'mon-fri'")
            i, j = names.index(lo), names.index(hi)
            span = names[i : j + 1] if i <= j else names[i:] + names[: j + 1]
            out.extend(span)
        else:
            out.append(text[:3] if len(text) >= 3 else text)
    return out


def _parse_clock(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text == "24:00":
            return time(23, 59, 59, 999999)
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
        if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError(f"expected a time of day 'HH:MM' (00:00..24:00), got {value!r}")
        return time(int(m.group(1)), int(m.group(2)))
    return value


ClockTime = Annotated[
    time,
    BeforeValidator(_parse_clock),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}$", "description": "time of day HH:MM"}),
]


def _check_tz(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}; use an IANA name like 'UTC' or 'Europe/Paris'") from exc
    return value


TimeZoneName = Annotated[str, AfterValidator(_check_tz)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2026-12-24T00:00:00Z; a naive date-time is ambiguous")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class WeeklyWindow(_Strict):
    """Recurring hours on given weekdays, e.g. days: mon-fri, from: '09:00', until: '17:00'.
    `until` earlier than `from` wraps past midnight (e.g. 22:00 -> 06:00)."""

    days: Annotated[tuple[Weekday, ...], BeforeValidator(_parse_weekdays)] = Field(
        default=tuple(_WEEKDAYS), description="weekdays, e.g. [mon, tue] or 'mon-fri'"
    )
    from_: ClockTime = Field(default=time(0, 0), alias="from")
    until: ClockTime = Field(default=time(23, 59, 59, 999999))
    tz: TimeZoneName = "UTC"

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.tz))
        t = local.time().replace(tzinfo=None)
        day = _WEEKDAYS[local.weekday()]
        if self.from_ <= self.until:
            return day in self.days and self.from_ <= t < self.until
        # wraps midnight: the part after midnight belongs to the previous day's window
        if t >= self.from_:
            return day in self.days
        previous = _WEEKDAYS[(local.weekday() - 1) % 7]
        return t < self.until and previous in self.days

    def describe(self) -> str:
        days = ",".join(d.value for d in self.days)
        return f"{days} {self.from_.strftime('%H:%M')}-{self.until.strftime('%H:%M')} {self.tz}"


def _check_cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5 or not croniter.is_valid(value):
        raise ValueError(
            f"invalid cron expression {value!r}; expected 5 fields 'minute hour day-of-month month day-of-week',"
            " e.g. '* 9-17 * * mon-fri'"
        )
    return value


class CronWindow(_Strict):
    """A cron-like window: `now` is inside when its minute matches the expression."""

    cron: Annotated[str, AfterValidator(_check_cron)] = Field(
        description="5-field cron expression; matching minutes are inside the window, e.g. '* 22-23,0-5 * * *'"
    )
    tz: TimeZoneName = "UTC"

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.tz)).replace(second=0, microsecond=0)
        return bool(croniter.match(self.cron, local))

    def describe(self) -> str:
        return f"cron '{self.cron}' {self.tz}"


class Period(_Strict):
    """A one-off period [start, end), e.g. a change freeze over the holidays."""

    start: AwareDatetime
    end: AwareDatetime
    name: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
        return self

    def contains(self, now: datetime) -> bool:
        return self.start <= now < self.end

    def describe(self) -> str:
        label = f"{self.name} " if self.name else ""
        return f"{label}{self.start.isoformat()} .. {self.end.isoformat()}"


def _window_kind(value: Any) -> str:
    """Pick the window type from its keys, so a mistake is reported against one type, not all three."""
    if isinstance(value, BaseModel):
        return {CronWindow: "cron-window", Period: "period", WeeklyWindow: "weekly-window"}[type(value)]
    if isinstance(value, dict):
        if "cron" in value:
            return "cron-window"
        if "start" in value or "end" in value:
            return "period"
    return "weekly-window"


TimeWindow = Annotated[
    Annotated[CronWindow, Tag("cron-window")]
    | Annotated[Period, Tag("period")]
    | Annotated[WeeklyWindow, Tag("weekly-window")],
    Discriminator(_window_kind),
]


class When(_Strict):
    """Conditions of a rule; all given conditions must hold (an absent condition always holds)."""

    action: ActionPatterns | None = None
    service: GlobPatterns | None = Field(default=None, description="the service the action runs on behalf of")
    target: GlobPatterns | None = Field(default=None, description="the action's target (service or provider)")
    cause: CauseNames | None = None
    confidence: Range | None = None
    blast_radius: Range | None = Field(default=None, description="share of fleet traffic touched, 0..1")
    reversible: bool | None = None
    during: Annotated[tuple[TimeWindow, ...], NonEmpty] | None = Field(
        default=None, description="matches only while now is inside one of these windows"
    )
    outside: Annotated[tuple[TimeWindow, ...], NonEmpty] | None = Field(
        default=None, description="matches only while now is inside none of these windows"
    )


# --------------------------------------------------------------------------------------------
# Verdicts and rules
# --------------------------------------------------------------------------------------------


class ApprovalSpec(_Strict):
    """How an approval is granted: n distinct approvers holding one of the roles, within timeout."""

    approvers: int = Field(default=1, ge=1, le=10)
    roles: Annotated[tuple[str, ...], BeforeValidator(_one_or_many)] = Field(default=("approver",))
    timeout: Duration = Field(default=1800.0)
    on_timeout: OnTimeout = OnTimeout.REJECT

    @field_validator("roles")
    @classmethod
    def _nonempty_roles(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        for role in roles:
            if not role.strip():
                raise ValueError("a role name may not be empty")
        return roles

    def requirement(self) -> ApprovalRequirement:
        return ApprovalRequirement(
            approvers=self.approvers,
            roles=tuple(sorted(set(self.roles))),
            timeout_s=self.timeout,
            on_timeout=self.on_timeout,
        )


_RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class Rule(_Strict):
    """When every condition in `when` holds, the rule matches and contributes its verdict."""

    id: str = Field(pattern=_RULE_ID, max_length=100, description="unique; cited in every decision")
    description: str = ""
    when: When = Field(default_factory=When)
    verdict: Verdict
    approval: ApprovalSpec | None = Field(default=None, description="only with verdict: approval")

    @model_validator(mode="after")
    def _approval_only_with_approval(self) -> Rule:
        if self.approval is not None and self.verdict is not Verdict.APPROVAL:
            raise ValueError(f"'approval' settings given but verdict is {self.verdict.value!r}; drop one")
        return self


class DefaultVerdict(_Strict):
    """What happens when no rule matches."""

    verdict: Verdict = Verdict.APPROVAL
    approval: ApprovalSpec | None = None


class Budgets(_Strict):
    """Caps on automatic actions over a sliding hour; over a cap, an auto verdict needs approval."""

    per_service_per_hour: int | None = Field(default=None, ge=0)
    global_per_hour: int | None = Field(default=None, ge=0)
    exempt_actions: ActionPatterns = Field(
        default=(ActionName.ESCALATE.value,), description="actions never counted nor limited (escalate changes nothing)"
    )


class FlapGuard(_Strict):
    """A second state-changing action on the same service, target or provider pair within `window`
    never runs on its own: it needs approval (or is denied, with `verdict: deny`)."""

    window: Duration = Field(default=3600.0)
    exempt_actions: ActionPatterns = Field(
        default=(ActionName.ESCALATE.value,), description="actions that change nothing: never counted nor held back"
    )
    verdict: Verdict = Field(
        default=Verdict.APPROVAL, description="what a flapping action gets: approval (default) or deny; never auto"
    )

    @field_validator("verdict")
    @classmethod
    def _never_auto(cls, verdict: Verdict) -> Verdict:
        if verdict is Verdict.AUTO:
            raise ValueError("the flap guard holds actions back: verdict must be 'approval' or 'deny', not 'auto'")
        return verdict


class KillSwitch(StrEnum):
    OFF = "off"
    AUTO_TO_APPROVAL = "auto_to_approval"
    DENY_ALL = "deny_all"


def _kill_switch_words(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as False; accept that spelling.
    if value is False:
        return KillSwitch.OFF.value
    return value


class ConstitutionFile(_Strict):
    """The whole of constitution.yaml."""

    version: Literal[1] = 1
    principles: tuple[str, ...] = Field(default=(), description="sentences handed to the LLM diagnoser")
    default: DefaultVerdict = Field(default_factory=DefaultVerdict)
    approval_defaults: ApprovalSpec = Field(
        default_factory=ApprovalSpec,
        description="approval settings used when a rule says approval without details, or a guard imposes one",
    )
    budgets: Budgets = Field(default_factory=Budgets)
    flap_guard: FlapGuard | None = None
    kill_switch: Annotated[KillSwitch, BeforeValidator(_kill_switch_words)] = KillSwitch.OFF
    rules: tuple[Rule, ...] = ()

    @field_validator("principles")
    @classmethod
    def _principles_text(cls, principles: tuple[str, ...]) -> tuple[str, ...]:
        for i, p in enumerate(principles):
            if not p.strip():
                raise ValueError(f"principle {i} is empty")
        return principles
