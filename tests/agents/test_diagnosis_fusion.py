"""Rank fusion: the callee that every caller waits on gets a place in the top three even when
louder, unrelated movements outscore it, and the first place stays the score's."""

from __future__ import annotations

from agents.diagnosis import DeterministicDiagnoser, ServiceRank
from agents.diagnosis.deterministic import fuse_ranks
from domain import SeriesEvidence

from .test_diagnosis_peers import CLIENT, CPU, MEM, PODS, incident, ranked

#: front waits a little longer on its one callee, pay, whose own metrics stay flat; meanwhile
#: three unrelated pods move loudly (ads and mail CPU, cart memory).
LOUD_ELSEWHERE = {("front", CLIENT): 1.2, ("ads", CPU): 8.0, ("mail", CPU): 6.0, ("cart", MEM): 1.05}


def _rank(service: str, score: float, credit: float = 0.0) -> ServiceRank:
    return ServiceRank(service=service, score=score, anomaly=score, upstream=False, credit=credit)


def _fuse_credit(ranks: list[ServiceRank]) -> list[ServiceRank]:
    """The shipped fusion with caller credit as its only family."""
    return fuse_ranks(ranks, [{r.service: r.credit for r in ranks}])


class TestCallerCreditPlaces:
    def test_a_waited_on_callee_outscored_by_loud_pods_still_makes_the_top_three(self) -> None:
        """pay scores below three loud pods, yet ranks second because its caller waited on it."""
        ctx = incident(PODS, after=LOUD_ELSEWHERE, edges=[("front", "pay")])
        by_score = sorted(DeterministicDiagnoser().analyse(ctx)[1], key=lambda r: (-r.score, r.service))
        assert [r.service for r in by_score].index("pay") >= 3
        order = ranked(ctx)
        assert order[:3] == [by_score[0].service, "pay", by_score[1].service]

    def test_without_a_call_graph_the_order_is_the_score_order(self) -> None:
        """With no edges no caller credit exists, and the ranking is the plain score order."""
        ctx = incident(PODS, after=LOUD_ELSEWHERE)
        by_score = sorted(DeterministicDiagnoser().analyse(ctx)[1], key=lambda r: (-r.score, r.service))
        assert ranked(ctx) == [r.service for r in by_score]

    def test_the_leader_keeps_first_place_even_with_less_credit(self) -> None:
        """The best-scored service stays first though another has all the caller credit."""
        fused = _fuse_credit([_rank("a", 5.0), _rank("b", 4.0), _rank("c", 3.0), _rank("d", 1.0, credit=2.0)])
        assert [r.service for r in fused] == ["a", "d", "b", "c"]

    def test_places_alternate_and_every_service_appears_once(self) -> None:
        """After the leader, credit and score alternate, skipping services already placed."""
        ranks = [
            _rank(s, 10.0 - i, credit=c) for i, (s, c) in enumerate(zip("abcdefg", (0, 1, 0, 0, 3, 0, 2), strict=True))
        ]
        fused = [r.service for r in _fuse_credit(ranks)]
        assert fused == ["a", "e", "b", "g", "c", "d", "f"]
        assert sorted(fused) == sorted("abcdefg")


def test_a_callee_placed_for_its_callers_waiting_cites_that_waiting() -> None:
    """pay's evidence names front's outgoing-call latency, the series that earned it its place."""
    ctx = incident(PODS, after=LOUD_ELSEWHERE, edges=[("front", "pay")])
    pay = next(r for r in DeterministicDiagnoser().ranked(ctx) if r.service == "pay")
    cited = {(e.service, e.signal) for e in pay.evidence if isinstance(e, SeriesEvidence)}
    assert ("front", CLIENT) in cited
