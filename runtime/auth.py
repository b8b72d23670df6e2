"""Bearer tokens -> identities with roles, for the HTTP API.

The tokens file lists identities with their roles and the SHA-256 of their token; the tokens
themselves are never stored. A presented token is hashed and compared in constant time with
every stored hash. `homeostat token new NAME --role approver` prints a fresh token and the
YAML entry to paste.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.yaml_lines import ConfigFileError, ConfigIssue, load_yaml_with_lines, validation_issues
from runtime.ports import Identity

log = logging.getLogger(__name__)

Role = Literal["viewer", "approver", "operator", "auditor"]
ROLES: tuple[Role, ...] = ("viewer", "approver", "operator", "auditor")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in the tokens file for `token`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "hst_" + secrets.token_urlsafe(32)


class IdentityEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    token_sha256: str

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.match(value):
            raise ValueError("must be the 64-hex-digit SHA-256 of the token (see `homeostat token hash`)")
        return value


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    identities: list[IdentityEntry]


def _check_entries(entries: list[IdentityEntry]) -> list[IdentityEntry]:
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"identity names must be unique; repeated: {dupes}")
    hashes = [e.token_sha256 for e in entries]
    if len(set(hashes)) != len(hashes):
        raise ValueError("two identities share a token hash; give each person their own token")
    return entries


def _read_tokens_file(path: Path) -> list[IdentityEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([ConfigIssue(str(path), 1, (), f"cannot read tokens file: {exc}")]) from exc
    data, locate = load_yaml_with_lines(text, str(path))
    try:
        parsed = TokensFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(validation_issues(exc, data, locate, str(path))) from exc
    try:
        return _check_entries(list(parsed.identities))
    except ValueError as exc:
        raise ConfigFileError([ConfigIssue(str(path), locate(("identities",)), ("identities",), str(exc))]) from exc


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class TokenAuthority:
    """Resolves bearer tokens to identities; holds only hashes.

    Built `from_file`, it re-reads the file when it changes (a revoked token stops working
    without a restart); a bad edit is logged and the previous identities stay in force.
    """

    def __init__(self, entries: Iterable[IdentityEntry]) -> None:
        self._entries = _check_entries(list(entries))
        self._path: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, tuple[str, Iterable[str]]]) -> TokenAuthority:
        """Build from plain tokens, ``{name: (token, roles)}``: for tests and `run --simulate`."""
        return cls(
            IdentityEntry(name=name, roles=list(roles), token_sha256=hash_token(token))
            for name, (token, roles) in tokens.items()
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TokenAuthority:
        """Load a tokens file; raises `ConfigFileError` naming file, line and key."""
        path = Path(path)
        stamp = _stamp(path)
        authority = cls(_read_tokens_file(path))
        authority._path, authority._stamp = path, stamp
        return authority

    def _reload_if_changed(self) -> None:
        if self._path is None:
            return
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._entries = _read_tokens_file(self._path)
            except ConfigFileError as exc:
                log.error("tokens file change refused; previous identities stay in force:\n%s", exc)
                return
            log.info("tokens file reloaded: %d identities", len(self._entries))

    def resolve(self, token: str) -> Identity | None:
        """The identity holding `token`, or None. Compares against every entry in constant time."""
        self._reload_if_changed()
        digest = hash_token(token)
        found: IdentityEntry | None = None
        for entry in list(self._entries):
            if hmac.compare_digest(digest, entry.token_sha256):
                found = entry
        return None if found is None else Identity(name=found.name, roles=tuple(found.roles))

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]


# -- `homeostat token ...` --------------------------------------------------------------------

token_app = typer.Typer(help="Create API tokens and the hashes stored in the tokens file.", no_args_is_help=True)


@token_app.command("hash")
def token_hash_command(
    token: Annotated[str, typer.Argument(help="the token to hash; '-' reads it from stdin")],
) -> None:
    """Print the SHA-256 of a token, for the token_sha256 field of the tokens file."""
    if token == "-":
        token = typer.get_text_stream("stdin").readline().strip()
    typer.echo(hash_token(token))


@token_app.command("new")
def token_new_command(
    name: Annotated[str, typer.Argument(help="who the token is for")],
    role: Annotated[
        list[str] | None, typer.Option("--role", "-r", help=f"one of {', '.join(ROLES)}; repeatable")
    ] = None,
) -> None:
    """Make a fresh token; prints the token (give it to the person) and the YAML entry to store."""
    role = role or ["viewer"]
    bad = [r for r in role if r not in ROLES]
    if bad:
        raise typer.BadParameter(f"unknown role(s) {bad}; choose from {list(ROLES)}", param_hint="--role")
    token = new_token()
    typer.echo(f"token (shown once): {token}")
    typer.echo("tokens-file entry:")
    typer.echo(f"  - name: {name}\n    roles: [{', '.join(role)}]\n    token_sha256: {hash_token(token)}")
