"""Scenario files: YAML in, a validated `Scenario` out, errors that name file:line and field.

A scenario is data only: a new one needs no code. `Scenario.build_fleet()` gives a fresh,
seeded fleet whose virtual time starts at `scenario.start`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from simulations._fleet import Fleet, FleetError
from simulations._spec import FleetSpec, GroundTruth, Injection, ScenarioSpec

SCENARIO_DIR = Path(__file__).parent / "scenarios"

Loc = tuple[str | int, ...]
_INJECTION_TAGS = frozenset({"fault", "deploy", "load", "noise"})


class ScenarioError(ValueError):
    """A scenario file is unreadable or invalid; the message names file:line and the field."""


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario: what to run, for how long, and what the right answer is."""

    spec: ScenarioSpec
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def duration_s(self) -> float:
        return self.spec.duration

    @property
    def start(self) -> datetime:
        return self.spec.start

    @property
    def fleet_spec(self) -> FleetSpec:
        return self.spec.fleet

    @property
    def injections(self) -> tuple[Injection, ...]:
        return self.spec.injections

    @property
    def ground_truth(self) -> GroundTruth:
        return self.spec.ground_truth

    @property
    def is_control(self) -> bool:
        """A no-fault control: nothing is wrong, any remediation is a false action."""
        return self.spec.ground_truth.cause is None

    def build_fleet(self) -> Fleet:
        """A fresh fleet for this scenario (same seed -> same samples)."""
        return Fleet(seed=self.seed, start=self.start, fleet=self.fleet_spec, injections=self.injections)


def builtin_scenarios() -> list[Path]:
    """The scenario files shipped with Homeostat, sorted by file name."""
    return sorted(SCENARIO_DIR.glob("*.yaml"))


def load_scenarios(directory: str | Path) -> list[Scenario]:
    """Every `*.yaml` scenario in a folder, sorted by file name."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ScenarioError(f"{folder}: not a folder of scenario files")
    return [load_scenario(p) for p in sorted(folder.glob("*.yaml"))]


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; any problem raises ScenarioError naming file:line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{file}: cannot read scenario file: {exc.strerror or exc}") from exc
    return parse_scenario(text, source=str(file), path=file)


def parse_scenario(text: str, *, source: str = "<scenario>", path: Path | None = None) -> Scenario:
    """Validate scenario YAML given as text; `source` names it in error messages."""
    yaml = YAML(typ="rt")
    try:
        document = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ScenarioError(f"{source}:{line}: invalid YAML: {exc.problem or exc.context}") from exc
    if not isinstance(document, CommentedMap):
        raise ScenarioError(f"{source}:1: a scenario file must be a mapping with name, seed, duration, ...")
    lines: dict[Loc, int] = {}
    data = _plain(document, (), lines)
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err, source, lines) for err in exc.errors()]
        raise ScenarioError("\n".join(problems)) from None
    scenario = Scenario(spec=spec, path=path)
    _check_semantics(scenario, source, lines)
    return scenario


def _check_semantics(scenario: Scenario, source: str, lines: dict[Loc, int]) -> None:
    """What pydantic cannot see: names that must exist in the fleet, times inside the run."""
    spec = scenario.spec
    try:
        fleet = scenario.build_fleet()
    except FleetError as exc:
        message = str(exc)
        loc: Loc = ("fleet",)
        if message.startswith("fleet.services."):
            loc = ("fleet", "services", message.split(".")[2].split(":", maxsplit=1)[0])
        elif message.startswith("injection"):
            loc = ("injections",)
        raise ScenarioError(f"{source}:{_line(lines, loc)}: {message}") from None
    topology = fleet.topology()
    for i, injection in enumerate(spec.injections):
        if injection.at > spec.duration:
            raise ScenarioError(
                f"{source}:{_line(lines, ('injections', i, 'at'))}: injections.{i}.at: "
                f"{injection.at:g}s is after the scenario ends ({spec.duration:g}s)"
            )
    truth = spec.ground_truth
    providers = fleet.providers()
    for j, fault in enumerate(truth.faults):
        base: Loc = ("ground_truth",) if j == 0 else ("ground_truth", "also", j - 1)
        if fault.service not in topology.services and fault.service not in providers:
            raise ScenarioError(
                f"{source}:{_line(lines, (*base, 'service'))}: {'.'.join(map(str, (*base, 'service')))}: "
                f"unknown service {fault.service!r}; known: {sorted(topology.services)}"
            )
        if fault.provider is not None and fault.provider not in providers:
            raise ScenarioError(
                f"{source}:{_line(lines, (*base, 'provider'))}: {'.'.join(map(str, (*base, 'provider')))}: "
                f"unknown provider {fault.provider!r}; known: {sorted(providers)}"
            )


def _plain(node: Any, loc: Loc, lines: dict[Loc, int]) -> Any:
    """ruamel's round-trip nodes -> plain dicts/lists, recording the 1-based line of each path."""
    if isinstance(node, CommentedMap):
        lines.setdefault(loc, node.lc.line + 1)
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*loc, str(key))
            try:
                lines[child] = node.lc.key(key)[0] + 1
            except (KeyError, TypeError):
                lines[child] = lines[loc]
            out[str(key)] = _plain(value, child, lines)
        return out
    if isinstance(node, CommentedSeq):
        lines.setdefault(loc, node.lc.line + 1)
        items = []
        for index, value in enumerate(node):
            child = (*loc, index)
            try:
                lines[child] = node.lc.item(index)[0] + 1
            except (KeyError, TypeError, IndexError):
                lines[child] = lines[loc]
            items.append(_plain(value, child, lines))
        return items
    if isinstance(node, datetime):
        return datetime.fromisoformat(node.isoformat())
    if isinstance(node, date):
        return datetime.combine(node, time())
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _line(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of the deepest known prefix of `loc`."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1


def _describe(error: Any, source: str, lines: dict[Loc, int]) -> str:
    # pydantic adds the union member's tag to the location (e.g. injections.0.fault.service);
    # drop tags that are not keys of the document so the breadcrumb matches the file.
    loc: Loc = tuple(error["loc"])
    if len(loc) > 2 and loc[0] == "injections" and loc[2] in _INJECTION_TAGS:
        loc = loc[:2] + loc[3:]  # pydantic names the union member (the injection's type) here
    where = ".".join(str(p) for p in loc) or "(top level)"
    message = error["msg"]
    if error.get("type") == "extra_forbidden":
        message = "unknown field (check the spelling; see docs/SIMULATOR.md for the fields)"
    elif error.get("type") == "missing":
        message = "required field is missing"
    return f"{source}:{_line(lines, tuple(loc))}: {where}: {message}"
