"""Bad constitution files anywhere: any text either loads or fails with a ConstitutionError, never a crash."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import Constitution, ConstitutionError, parse_constitution

SHIPPED = (Path(__file__).resolve().parents[2] / "constitution.yaml").read_text()
LINES = SHIPPED.splitlines()

_YAMLISH = st.text(alphabet=st.sampled_from(list("abc:-[]{}'\"#&*!|>%@`,.0123456789 \n\t")), max_size=300)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _loads_or_explains(text: str) -> None:
    try:
        result = parse_constitution(text, "fuzz.yaml")
    except ConstitutionError as error:
        assert str(error).startswith("fuzz.yaml"), str(error)  # every error names the file (and line)
    else:
        assert isinstance(result, Constitution)


@_FUZZ
@given(text=st.one_of(st.text(max_size=300), _YAMLISH))
def test_any_text_loads_or_is_rejected_with_a_located_error(text: str) -> None:
    """Arbitrary text never raises anything but a ConstitutionError naming the file."""
    _loads_or_explains(text)


@_FUZZ
@given(
    index=st.integers(min_value=0, max_value=len(LINES) - 1),
    replacement=st.one_of(st.just(""), st.text(max_size=40), _YAMLISH.map(lambda t: t[:40])),
)
def test_any_single_line_edit_of_the_shipped_file_loads_or_is_rejected(index: int, replacement: str) -> None:
    """An operator's typo anywhere in a real constitution is a clear error, never a crash."""
    lines = list(LINES)
    lines[index] = replacement
    _loads_or_explains("\n".join(lines))
