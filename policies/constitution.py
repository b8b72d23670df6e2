"""Loading constitution.yaml: parse, validate every key with its line, and pin the exact text by digest.

The only I/O in policies/ is `load_constitution` reading the file; everything else is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from domain import ApprovalRequirement, sha256_hex
from policies.schema import (
    ApprovalSpec,
    Budgets,
    ConstitutionFile,
    DefaultVerdict,
    FlapGuard,
    KillSwitch,
    Rule,
)
from policies.yaml_lines import ConfigFileError, ConfigIssue, load_yaml_with_lines, validation_issues


class ConstitutionError(ConfigFileError):
    """constitution.yaml is invalid. `errors` lists every issue (line, path, message); `str()` prints
    them one per line as `constitution.yaml:LINE: rules[3].when.confidence: <what is wrong>`."""


@dataclass(frozen=True)
class Constitution:
    """A validated constitution and the exact text it came from (its digest goes into every decision)."""

    spec: ConstitutionFile
    text: str
    source: str
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256_hex(self.text))

    @property
    def principles(self) -> list[str]:
        return list(self.spec.principles)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.spec.rules

    @property
    def default(self) -> DefaultVerdict:
        return self.spec.default

    @property
    def budgets(self) -> Budgets:
        return self.spec.budgets

    @property
    def flap_guard(self) -> FlapGuard | None:
        return self.spec.flap_guard

    @property
    def kill_switch(self) -> KillSwitch:
        return self.spec.kill_switch

    @property
    def approval_defaults(self) -> ApprovalSpec:
        return self.spec.approval_defaults

    def rule(self, rule_id: str) -> Rule:
        for rule in self.spec.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"no rule with id {rule_id!r} in {self.source}")

    def approval_for(self, spec: ApprovalSpec | None) -> ApprovalRequirement:
        """The requirement for an approval verdict: the rule's own settings, else approval_defaults."""
        return (spec or self.spec.approval_defaults).requirement()


def _duplicate_rule_ids(data: Any, locate: Any, source: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        return issues
    first_seen: dict[str, int] = {}
    for i, rule in enumerate(data["rules"]):
        if not isinstance(rule, dict) or not isinstance(rule.get("id"), str):
            continue
        rule_id = rule["id"]
        if rule_id in first_seen:
            j = first_seen[rule_id]
            line = locate(("rules", i, "id"))
            issues.append(
                ConfigIssue(
                    source,
                    line,
                    ("rules", i, "id"),
                    f"duplicate rule id {rule_id!r} (also rules[{j}], line {locate(('rules', j, 'id'))})",
                )
            )
        else:
            first_seen[rule_id] = i
    return issues


def parse_constitution(text: str, source: str = "constitution.yaml") -> Constitution:
    """Validate constitution text; raise ConstitutionError listing every problem with its line."""
    try:
        data, locate = load_yaml_with_lines(text, source)
    except ConfigFileError as exc:
        raise ConstitutionError(exc.errors) from exc
    if data is None:
        raise ConstitutionError([ConfigIssue(source, 1, (), "the file is empty; expected a mapping with 'rules:'")])
    if not isinstance(data, dict):
        raise ConstitutionError(
            [ConfigIssue(source, 1, (), f"expected a mapping at the top level, got {type(data).__name__}")]
        )
    issues = _duplicate_rule_ids(data, locate, source)
    spec: ConstitutionFile | None = None
    try:
        spec = ConstitutionFile.model_validate(data)
    except ValidationError as exc:
        issues.extend(validation_issues(exc, data, locate, source))
    if issues or spec is None:
        raise ConstitutionError(issues)
    return Constitution(spec=spec, text=text, source=source)


def load_constitution(path: Path) -> Constitution:
    """Read and validate a constitution file; errors name the file as given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConstitutionError(
            [ConfigIssue(str(path), 0, (), f"cannot read the file: {exc.strerror or exc}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConstitutionError([ConfigIssue(str(path), 1, (), f"the file is not UTF-8 text: {exc.reason}")]) from exc
    return parse_constitution(text, source=str(path))
