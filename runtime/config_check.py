"""`homeostat run --config FILE --check`: load everything the daemon would load at start, and say so.

`load_config` already refuses a bad config (and a bad topology file) with file, line and key. The
check also loads the constitution, the tokens file and the detection overrides the way the daemon
does, so an operator can validate a change before a deploy instead of at the next restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from policies import ConstitutionError, load_constitution
from policies.yaml_lines import ConfigFileError
from runtime.auth import TokenAuthority
from runtime.config import HomeostatConfig, database_shown
from runtime.detection import load_detection_config
from runtime.detection.config import DetectionConfigError
from runtime.topology_file import load_topology_file


class CheckFailed(ValueError):
    """Something the daemon loads at start is invalid; the message names the file, line and key."""


def check_config(path: Path, config: HomeostatConfig) -> list[str]:
    """One line per thing the daemon would start with; raises CheckFailed on the first bad file."""
    return list(_lines(path, config))


def _lines(path: Path, config: HomeostatConfig) -> Iterator[str]:
    yield f"config ok: {path}"
    yield f"  database: {database_shown(config.database_url)}"
    try:
        constitution = load_constitution(config.constitution)
    except (ConstitutionError, OSError) as exc:
        raise CheckFailed(str(exc)) from None
    yield f"  constitution: {config.constitution} ({len(constitution.rules)} rules, digest {constitution.digest[:12]})"
    if config.topology is not None:
        topology = load_topology_file(config.topology)  # load_config has already refused a bad one
        providers = sorted({info.provider for info in topology.services.values() if info.provider})
        calls = sum(len(info.depends_on) for info in topology.services.values())
        yield (
            f"  topology: {config.topology} ({len(topology.services)} services, "
            f"{len(providers)} provider(s), {calls} call(s))"
        )
    else:
        yield "  topology: none (only a simulator source's GET /topology, if any)"
    if config.auth.tokens_file is not None:
        try:
            TokenAuthority.from_file(config.auth.tokens_file)
        except ConfigFileError as exc:
            raise CheckFailed(str(exc)) from None
        yield f"  tokens: {config.auth.tokens_file}"
    if config.detection_overrides is not None:
        try:
            load_detection_config(config.detection_overrides)
        except (DetectionConfigError, OSError) as exc:
            raise CheckFailed(str(exc)) from None
        yield f"  detection overrides: {config.detection_overrides}"
    names = ", ".join(f"{config.source_name(i)} ({s.type})" for i, s in enumerate(config.sources)) or "none"
    yield f"  sources: {names}"
    yield f"  diagnoser: {config.diagnoser.kind}"
