"""Hot reload of constitution.yaml: a valid change takes effect, an invalid one never replaces a good one.

The daemon calls `check()` on a schedule and audits what the callbacks report (old and new
digests on a change, the errors on a rejection). Invariant 7: a bad constitution never
replaces a good one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from domain import sha256_hex
from policies import Constitution, ConstitutionError, load_constitution, parse_constitution
from policies.yaml_lines import ConfigIssue


class ConstitutionWatcher:
    """Holds the constitution in force and swaps it when the file changes to something valid.

    The constructor loads the file and raises ConstitutionError if it is invalid: the daemon
    must not start without a good constitution.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[Constitution, Constitution], None],
        on_error: Callable[[ConstitutionError], None],
    ) -> None:
        self.path = Path(path)
        self._on_change = on_change
        self._on_error = on_error
        self._current = load_constitution(self.path)
        self._seen_digest = self._current.digest  # last text looked at, good or bad

    @property
    def current(self) -> Constitution:
        """The constitution in force."""
        return self._current

    def check(self) -> bool:
        """Re-read the file and compare its content (a small file: reading it beats trusting mtime,
        which can miss two writes within its resolution). Returns True when a new constitution took
        effect (on_change was called). An invalid or unreadable file keeps the old one and calls
        on_error once per distinct bad content."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            digest = f"unreadable:{exc}"
            if digest != self._seen_digest:
                self._seen_digest = digest
                self._on_error(ConstitutionError([ConfigIssue(str(self.path), 0, (), f"cannot read the file: {exc}")]))
            return False
        digest = sha256_hex(text)
        if digest == self._seen_digest:
            return False  # touched, or the same bad text again
        self._seen_digest = digest
        if digest == self._current.digest:
            return False  # back to the text in force
        try:
            new = parse_constitution(text, source=str(self.path))
        except ConstitutionError as exc:
            self._on_error(exc)
            return False
        old, self._current = self._current, new
        self._on_change(old, new)
        return True
