"""Tokens file: identities with roles and hashed tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.auth import TokenAuthority, hash_token, token_app
from runtime.config import ConfigFileError
from runtime.ports import Identity


def test_tokens_file_resolves_hashed_tokens(tmp_path: Path) -> None:
    """A token whose SHA-256 is in the file resolves to its identity and roles; the file holds no token."""
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "identities:\n"
        f"  - name: alice\n    roles: [approver, viewer]\n    token_sha256: {hash_token('s3cret-a')}\n"
        f"  - name: aude\n    roles: [auditor]\n    token_sha256: {hash_token('s3cret-b').upper()}\n"
    )
    authority = TokenAuthority.from_file(path)
    assert authority.resolve("s3cret-a") == Identity("alice", ("approver", "viewer"))
    assert authority.resolve("s3cret-b") == Identity("aude", ("auditor",))
    assert authority.resolve("s3cret-") is None
    assert authority.resolve("") is None
    assert "s3cret" not in path.read_text()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "  - name: bob\n    roles: [admin]\n    token_sha256: " + "a" * 64 + "\n",
            "tokens.yaml:3: identities[0].roles[0]",
        ),
        (
            "  - name: bob\n    roles: [viewer]\n    token_sha256: plaintext\n",
            "tokens.yaml:4: identities[0].token_sha256",
        ),
        ("  - name: bob\n    roles: [viewer]\n", "tokens.yaml:2: identities[0].token_sha256: required key is missing"),
    ],
)
def test_bad_tokens_file_names_line_and_key(tmp_path: Path, entry: str, message: str) -> None:
    """Unknown roles, plaintext tokens and missing hashes are refused with file:line: key."""
    path = tmp_path / "tokens.yaml"
    path.write_text("identities:\n" + entry)
    with pytest.raises(ConfigFileError) as info:
        TokenAuthority.from_file(path)
    assert str(info.value.errors[0]).endswith(str(info.value.errors[0]).split(": ", 1)[1])
    assert str(info.value.errors[0]).startswith(f"{tmp_path}/{message}")


def test_shared_token_is_refused() -> None:
    """Two identities with one token would make approvals unattributable, so it is refused."""
    with pytest.raises(ValueError, match="share a token"):
        TokenAuthority.from_tokens({"a": ("same", ["viewer"]), "b": ("same", ["approver"])})


def test_token_cli_makes_a_usable_entry() -> None:
    """`homeostat token new` prints a token and an entry whose hash matches it; `hash` agrees."""
    runner = CliRunner()
    result = runner.invoke(token_app, ["new", "carol", "--role", "approver"])
    assert result.exit_code == 0, result.output
    token = result.output.split("token (shown once): ")[1].split()[0]
    assert f"token_sha256: {hash_token(token)}" in result.output
    hashed = runner.invoke(token_app, ["hash", token])
    assert hashed.output.strip() == hash_token(token)
    bad = runner.invoke(token_app, ["new", "carol", "--role", "root"])
    assert bad.exit_code != 0 and "unknown role" in bad.output


def test_edited_tokens_file_takes_effect_without_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Revoking a token in the file stops it at once; a broken edit is refused and the old identities stay."""
    path = tmp_path / "tokens.yaml"
    entry = "  - name: {name}\n    roles: [approver]\n    token_sha256: {digest}\n"
    path.write_text(
        "identities:\n"
        + entry.format(name="alice", digest=hash_token("tok-a"))
        + entry.format(name="bob", digest=hash_token("tok-b"))
    )
    authority = TokenAuthority.from_file(path)
    assert authority.resolve("tok-b") == Identity("bob", ("approver",))
    path.write_text("identities:\n" + entry.format(name="alice", digest=hash_token("tok-a")) + "\n")
    assert authority.resolve("tok-b") is None
    assert authority.resolve("tok-a") is not None
    path.write_text("identities:\n  - name: alice\n    roles: [root]\n    token_sha256: nope\n\n\n")
    assert authority.resolve("tok-a") == Identity("alice", ("approver",))
    assert "tokens file change refused" in caplog.text and "tokens.yaml:3" in caplog.text
