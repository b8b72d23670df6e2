"""YAML loading that remembers where every value came from, so config errors name file, line and key.

Generic on purpose: constitution.yaml uses it, and so does the runtime config (homeostat.yaml).
`load_yaml_with_lines` returns plain Python data plus a `locate` function; `validation_issues`
turns a pydantic `ValidationError` into `ConfigIssue`s rendered as `file:LINE: a.b[3].c: message`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

PathPart = str | int
Path = tuple[PathPart, ...]
Locate = Callable[[Path], int]


@dataclass(frozen=True)
class ConfigIssue:
    """One thing wrong with a config file: where (line, key path) and what."""

    source: str
    line: int
    path: Path
    message: str

    @property
    def dotted_path(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        where = f"{self.dotted_path}: " if self.path else ""
        return f"{self.source}:{self.line}: {where}{self.message}"


class ConfigFileError(ValueError):
    """A config file is invalid; `errors` holds every issue found, `str()` lists them one per line."""

    def __init__(self, errors: Sequence[ConfigIssue]) -> None:
        self.errors: list[ConfigIssue] = sorted(errors, key=lambda e: (e.line, format_path(e.path)))
        super().__init__("\n".join(str(e) for e in self.errors))


def format_path(path: Path) -> str:
    """('rules', 3, 'when', 'confidence') -> 'rules[3].when.confidence'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers -> dict/list/scalars (keys kept as loaded)."""
    if isinstance(node, CommentedMap):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    if node is None:
        return None
    if isinstance(node, bool | int | float | str):
        # ruamel's ScalarFloat / ScalarBoolean etc. subclass the builtins; normalise them.
        if isinstance(node, bool):
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return str(node)
    return node  # datetimes and dates stay as loaded


def load_yaml_with_lines(text: str, source: str = "<yaml>") -> tuple[Any, Locate]:
    """Parse YAML text; return (plain data, locate) where locate(path) is the 1-based line of the
    deepest node on `path` that exists (so a missing key points at its parent mapping).

    Raises ConfigFileError (one issue, with the line) on a YAML syntax error or a duplicate key.
    """
    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigFileError([ConfigIssue(source, line, (), f"YAML syntax: {problem}{context}")]) from exc
    except YAMLError as exc:
        raise ConfigFileError([ConfigIssue(source, 1, (), f"YAML syntax: {exc}")]) from exc

    def locate(path: Path) -> int:
        node: Any = root
        line = 0
        for part in path:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0]
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0]
                node = node[part]
            elif isinstance(node, CommentedMap | CommentedSeq):
                # A missing key or a pydantic-internal loc part (union tag): stay on this node.
                if line == 0 and node.lc.line is not None:
                    line = node.lc.line
                continue
            else:
                break
        return line + 1

    return _plain(root), locate


def _clean_loc(loc: tuple[int | str, ...], data: Any, kind: str) -> Path:
    """Drop pydantic-internal loc parts (union branch tags like 'function-after[...]', 'str')
    that do not exist in the data, keeping the keys a person would recognise."""
    out: list[PathPart] = []
    node: Any = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            out.append(part)
            node = node[part]
        elif kind == "missing" and isinstance(node, dict) and isinstance(part, str) and i == len(loc) - 1:
            out.append(part)  # a missing (required) key: name it
        # anything else is a pydantic tag: skip it
    return tuple(out)


_PREFIXES = ("Value error, ", "Assertion failed, ")


def _message(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value"))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind == "extra_forbidden":
        return "unknown key (not part of the schema; check the spelling)"
    if kind == "missing":
        return "required key is missing"
    if kind in {"literal_error", "enum"}:
        return f"{msg}; got {err.get('input')!r}"
    return msg


def validation_issues(exc: ValidationError, data: Any, locate: Locate, source: str) -> list[ConfigIssue]:
    """Turn every error of a pydantic ValidationError into a ConfigIssue with its line."""
    issues: list[ConfigIssue] = []
    seen: set[tuple[Path, str]] = set()
    for err in exc.errors():
        path = _clean_loc(tuple(err["loc"]), data, str(err.get("type", "")))
        message = _message(err)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        issues.append(ConfigIssue(source, locate(path), path, message))
    return issues
