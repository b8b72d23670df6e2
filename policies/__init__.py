"""The constitution and the policy engine: what Homeostat may do on its own, and what needs people.

Pure: the only I/O is reading the constitution file. `decide()` turns a proposal and its
context into a Decision citing the rules that matched and the constitution's digest.
"""

from policies.constitution import Constitution, ConstitutionError, load_constitution, parse_constitution
from policies.decide import (
    POLICY_ENGINE_VERSION,
    DecisionContext,
    Explanation,
    RecentAction,
    RuleCheck,
    check_rule,
    decide,
    explain,
    flap_link,
    merge_approvals,
    restrictiveness,
)
from policies.schema import ConstitutionFile, KillSwitch, Rule, parse_duration
from policies.yaml_lines import ConfigFileError, ConfigIssue, format_path, load_yaml_with_lines, validation_issues

__all__ = [
    "POLICY_ENGINE_VERSION",
    "ConfigFileError",
    "ConfigIssue",
    "Constitution",
    "ConstitutionError",
    "ConstitutionFile",
    "DecisionContext",
    "Explanation",
    "KillSwitch",
    "RecentAction",
    "Rule",
    "RuleCheck",
    "check_rule",
    "decide",
    "explain",
    "flap_link",
    "format_path",
    "load_constitution",
    "load_yaml_with_lines",
    "merge_approvals",
    "parse_constitution",
    "parse_duration",
    "restrictiveness",
    "validation_issues",
]
