"""Confidences down the ranked list never rise, even where rank fusion promotes a service that
scored lower than those it passed."""

from __future__ import annotations

import itertools

import pytest

from agents.diagnosis import DeterministicDiagnoser, confidence_of
from agents.diagnosis.deterministic import non_increasing

from .test_diagnosis_fusion import LOUD_ELSEWHERE
from .test_diagnosis_peers import PODS, incident


class TestNonIncreasing:
    def test_an_ordered_list_is_unchanged(self) -> None:
        """Confidences that already fall down the list are kept as they are."""
        assert non_increasing([0.5, 0.4, 0.4, 0.1]) == [0.5, 0.4, 0.4, 0.1]

    def test_a_promoted_place_shares_the_mean_with_the_places_it_passed(self) -> None:
        """A low value placed above higher ones pools with them into their mean (least squares)."""
        assert non_increasing([0.5, 0.1, 0.4, 0.3, 0.05]) == pytest.approx([0.5, 0.2667, 0.2667, 0.2667, 0.05])

    def test_the_total_is_kept(self) -> None:
        """Pooling moves confidence between places; it neither adds nor removes any."""
        values = [0.3, 0.1, 0.45, 0.2, 0.2, 0.35, 0.0]
        pooled = non_increasing(values)
        assert all(a >= b for a, b in itertools.pairwise(pooled))
        assert sum(pooled) == pytest.approx(sum(values), abs=1e-3)


def test_ranked_confidences_fall_down_the_list_after_rank_fusion() -> None:
    """pay, placed second for its caller's waiting though it scored lower, does not break the order."""
    ctx = incident(PODS, after=LOUD_ELSEWHERE, edges=[("front", "pay")])
    ranked = DeterministicDiagnoser().ranked(ctx)
    confidences = [r.confidence for r in ranked]
    assert [r.service for r in ranked].index("pay") == 1
    assert all(a >= b for a, b in itertools.pairwise(confidences)), confidences
    _hyps, ranks = DeterministicDiagnoser().analyse(ctx)
    own = {r.service: min(confidence_of(r.score), 0.5) for r in ranks}
    assert own["pay"] < own[ranks[2].service]  # without pooling the list would rise at place 3
