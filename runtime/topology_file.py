"""A fleet's topology from a file: its services, their providers and versions, and who calls whom.

The daemon reads one at start (`topology:` in homeostat.yaml), and `homeostat diagnose` reads
them for exported incidents. YAML or JSON (JSON is YAML), in either or both of two shapes:

```yaml
services:                 # what Homeostat knows of each service (domain.ServiceInfo)
  support-chat:
    provider: llm-alpha
    backup_provider: llm-beta
    model_version: m-2
    previous_model_version: m-1
    prompt_version: v7
    traffic_share: 0.6
    depends_on: [kb-retriever]
edges:                    # caller -> callee; added to depends_on
  - [support-chat, kb-retriever]
```

A service named only by an edge is known by name alone: no provider, no versions, no traffic
share. The same holds for any `services` field left out, so an operator can start from a call
graph and add wiring where they know it. A problem is reported as ``file:LINE: key: message``
(`ConfigFileError`), every problem at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from domain import ServiceInfo, Topology
from policies.yaml_lines import ConfigFileError, ConfigIssue, Locate, load_yaml_with_lines, validation_issues

#: What a service named without wiring is known as: a name and nothing else.
UNKNOWN_WIRING: dict[str, Any] = {"provider": "", "model_version": "", "prompt_version": "", "traffic_share": 0.0}


def bare_service(name: str) -> ServiceInfo:
    """A service known by name only."""
    return ServiceInfo.model_validate({"name": name, **UNKNOWN_WIRING})


def load_topology_file(path: Path, services: Iterable[str] = ()) -> Topology:
    """The topology in `path`, plus a bare entry for each of `services` it does not name.

    Raises ConfigFileError (file, line, key) for a missing, unreadable or malformed file.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError([ConfigIssue(source, 1, (), "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError([ConfigIssue(source, 1, (), f"cannot read the file: {exc}")]) from None
    data, locate = load_yaml_with_lines(text, source)  # a syntax error is a ConfigFileError with its line
    topology = parse_topology(data, source, locate)
    extra = {s: bare_service(s) for s in services if s not in topology.services}
    return Topology(services={**topology.services, **extra}) if extra else topology


def parse_topology(data: Any, source: str, locate: Locate) -> Topology:
    """A topology from parsed YAML/JSON data (see the module docstring for the shapes)."""
    if not isinstance(data, dict) or not ({"services", "edges"} & set(data)):
        raise ConfigFileError(
            [ConfigIssue(source, 1, (), 'expected {"services": {...}} and/or {"edges": [["caller", "callee"], ...]}')]
        )
    unknown = sorted(set(data) - {"services", "edges"})
    issues = [ConfigIssue(source, locate((key,)), (key,), "unknown key (expected services, edges)") for key in unknown]
    entries = _service_entries(data.get("services", {}), source, locate, issues)
    for caller, callee in _edges(data.get("edges", []), source, locate, issues):
        for name in (caller, callee):
            entries.setdefault(name, {"name": name, **UNKNOWN_WIRING})
        declared = entries[caller].get("depends_on", ())
        if isinstance(declared, list | tuple):  # anything else fails validation below, at its line
            entries[caller]["depends_on"] = sorted({*declared, callee})
    try:
        topology = Topology.model_validate({"services": entries})
    except ValidationError as exc:
        issues += validation_issues(exc, {"services": entries}, locate, source)
    if issues:
        raise ConfigFileError(issues)
    return topology


def _service_entries(raw: Any, source: str, locate: Locate, issues: list[ConfigIssue]) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        issues.append(ConfigIssue(source, locate(("services",)), ("services",), "must map service names to wiring"))
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for name, given in raw.items():
        where = ("services", name)
        fields = {} if given is None else given
        if not isinstance(fields, dict):
            issues.append(ConfigIssue(source, locate(where), where, "must be a mapping of ServiceInfo fields"))
            continue
        if fields.get("name", name) != name:
            issues.append(
                ConfigIssue(source, locate((*where, "name")), (*where, "name"), f"must be {name!r}, its key, if given")
            )
            continue
        entries[str(name)] = {**UNKNOWN_WIRING, **fields, "name": str(name)}
    return entries


def _edges(raw: Any, source: str, locate: Locate, issues: list[ConfigIssue]) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        issues.append(ConfigIssue(source, locate(("edges",)), ("edges",), "must be a list of [caller, callee]"))
        return []
    out: list[tuple[str, str]] = []
    for i, edge in enumerate(raw):
        if not (isinstance(edge, list) and len(edge) == 2 and all(isinstance(x, str) and x for x in edge)):
            message = f"must be [caller, callee] strings, got {edge!r}"
            issues.append(ConfigIssue(source, locate(("edges", i)), ("edges", i), message))
        elif edge[0] == edge[1]:
            issues.append(ConfigIssue(source, locate(("edges", i)), ("edges", i), f"{edge[0]!r} cannot call itself"))
        else:
            out.append((edge[0], edge[1]))
    return out
