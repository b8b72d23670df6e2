"""An invalid constitution is reported all at once, each error with its file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import ConstitutionError, load_constitution, parse_constitution

THREE_MISTAKES = """\
version: 1
default:
  verdict: approval
rules:
  - id: ok-rule
    when:
      action: escalate
    verdict: auto
  - id: bad-confidence
    when:
      confidence: {min: 1.5}
    verdict: auto
  - id: bad-action
    when:
      action: rollback_evrything
    verdict: auto
  - id: bad-verdict
    when:
      service: "x-*"
    verdict: maybe
"""


def errors_of(text: str) -> ConstitutionError:
    with pytest.raises(ConstitutionError) as info:
        parse_constitution(text)
    return info.value


def test_three_mistakes_are_all_reported_with_their_lines() -> None:
    """Three independent mistakes give three errors, each on the line where it is written."""
    err = errors_of(THREE_MISTAKES)
    got = [(e.line, e.dotted_path) for e in err.errors]
    assert got == [
        (11, "rules[1].when.confidence.min"),
        (15, "rules[2].when.action"),
        (20, "rules[3].verdict"),
    ]
    lines = str(err).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("constitution.yaml:11: rules[1].when.confidence.min: ")
    assert "rollback_evrything" in lines[1] and "matches no catalog action" in lines[1]
    assert lines[2].startswith("constitution.yaml:20: rules[3].verdict: ") and "'maybe'" in lines[2]


@pytest.mark.parametrize(
    ("snippet", "line", "path", "words"),
    [
        ("rules:\n  - id: a\n    verdict: auto\n    whenn: {}\n", 4, "rules[0].whenn", "unknown key"),
        ("rules:\n  - verdict: auto\n", 2, "rules[0].id", "required"),
        (
            "rules:\n  - id: a\n    when: {confidence: {min: 0.9, max: 0.2}}\n    verdict: auto\n",
            3,
            "rules[0].when.confidence",
            "greater than max",
        ),
        (
            "rules:\n  - id: a\n    when: {cause: bad_deploy}\n    verdict: auto\n",
            3,
            "rules[0].when.cause",
            "unknown cause",
        ),
        ("rules:\n  - id: a\n    verdict: deny\n    approval: {approvers: 2}\n", 2, "rules[0]", "verdict is 'deny'"),
        (
            "rules:\n  - id: a\n    verdict: approval\n    approval:\n      timeout: soon\n",
            5,
            "rules[0].approval.timeout",
            "duration",
        ),
        (
            "rules:\n  - id: a\n    verdict: approval\n    approval:\n      on_timeout: shrug\n",
            5,
            "rules[0].approval.on_timeout",
            "reject",
        ),
        (
            "rules:\n  - id: a\n    when:\n      during:\n        - cron: '* 25 * * *'\n    verdict: auto\n",
            5,
            "rules[0].when.during[0].cron",
            "invalid cron expression",
        ),
        (
            "rules:\n  - id: a\n    when:\n      during: []\n    verdict: auto\n",
            4,
            "rules[0].when.during",
            "empty list",
        ),
        (
            "rules:\n  - id: a\n    when:\n      during:\n        - {days: [mon, funday]}\n    verdict: auto\n",
            5,
            "rules[0].when.during[0].days[1]",
            "'mon'",
        ),
        (
            "rules:\n  - id: a\n    when:\n      during:\n        - {from: '9am'}\n    verdict: auto\n",
            5,
            "rules[0].when.during[0].from",
            "HH:MM",
        ),
        (
            "rules:\n  - id: a\n    when:\n      during:\n        - {tz: Mars/Olympus}\n    verdict: auto\n",
            5,
            "rules[0].when.during[0].tz",
            "time zone",
        ),
        (
            "rules:\n  - id: a\n    when:\n      during:\n"
            "        - {start: 2026-01-01, end: 2026-01-02T00:00:00Z}\n    verdict: deny\n",
            5,
            "rules[0].when.during[0].start",
            "time zone",
        ),
        (
            "rules:\n  - id: a\n    when:\n      during:\n"
            "        - {start: 2026-01-02T00:00:00Z, end: 2026-01-01T00:00:00Z}\n    verdict: deny\n",
            5,
            "rules[0].when.during[0]",
            "must be after start",
        ),
        (
            "rules:\n  - id: a\n    verdict: auto\n  - id: a\n    verdict: deny\n",
            4,
            "rules[1].id",
            "duplicate rule id 'a'",
        ),
        ("budgets:\n  per_service_per_hour: -1\n", 2, "budgets.per_service_per_hour", "greater than or equal to 0"),
        ("kill_switch: panic\n", 1, "kill_switch", "deny_all"),
        ("rules:\n  - id: a\n    verdict: auto\n  bad indent: [\n", 4, "", "YAML syntax"),
    ],
)
def test_each_kind_of_mistake_names_line_and_key(snippet: str, line: int, path: str, words: str) -> None:
    """Each kind of mistake is reported at the right line and key path, in words that say what is wrong."""
    err = errors_of(snippet)
    assert any(e.line == line and e.dotted_path == path and words in e.message for e in err.errors), str(err)


def test_empty_and_non_mapping_files_are_rejected() -> None:
    """An empty file or a top-level list is an error, not an empty constitution."""
    assert "empty" in str(errors_of(""))
    assert "mapping" in str(errors_of("- a\n- b\n"))


def test_missing_file_is_a_constitution_error(tmp_path: Path) -> None:
    """A file that cannot be read is reported as a ConstitutionError naming the path."""
    with pytest.raises(ConstitutionError, match=r"nope\.yaml"):
        load_constitution(tmp_path / "nope.yaml")


def test_errors_name_the_file_as_given(tmp_path: Path) -> None:
    """Errors from load_constitution carry the path the operator gave."""
    path = tmp_path / "c.yaml"
    path.write_text("rules:\n  - id: a\n    verdict: nope\n", encoding="utf-8")
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    assert str(info.value).startswith(f"{path}:3: rules[0].verdict: ")
