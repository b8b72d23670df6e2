"""The leader lease: one holder at a time, takeover only after expiry, self-fencing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from runtime.leader import LeaderLease, LeadershipLost, LeaseConfig
from runtime.store import engine_for


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = engine_for(str(tmp_path) + "/lease.db")
    else:
        engine = engine_for(request.getfixturevalue("pg_url"))
    yield engine
    engine.dispose()


CONFIG = LeaseConfig(ttl_s=2.0, renew_s=0.5, margin_s=0.5)


def test_only_one_replica_holds_the_lease(engine: Engine) -> None:
    """While the holder renews, a second replica cannot take the lease."""
    a, b = LeaderLease(engine, CONFIG, holder="a"), LeaderLease(engine, CONFIG, holder="b")
    assert a.acquire_or_renew()
    assert not b.acquire_or_renew()
    assert a.acquire_or_renew()
    assert not b.acquire_or_renew()
    a.check()
    with pytest.raises(LeadershipLost, match="does not hold"):
        b.check()


def test_an_expired_lease_passes_to_another_replica_with_a_new_epoch(engine: Engine) -> None:
    """Once the holder stops renewing, another replica takes over after the TTL and the epoch grows."""
    import time

    a, b = LeaderLease(engine, CONFIG, holder="a"), LeaderLease(engine, CONFIG, holder="b")
    assert a.acquire_or_renew()
    first = a.epoch
    time.sleep(CONFIG.ttl_s + 0.2)
    assert b.acquire_or_renew()
    assert b.epoch == (first or 0) + 1
    with pytest.raises(LeadershipLost):
        a.check()  # the old holder's local deadline ran out too
    assert not a.acquire_or_renew()  # and it cannot renew a lease someone else took


def test_a_holder_fences_itself_before_its_lease_could_expire(engine: Engine) -> None:
    """Past renewal time + TTL - margin on its own clock, the holder refuses to act without asking anyone."""
    clock = FakeMonotonic()
    a = LeaderLease(engine, CONFIG, holder="a", monotonic=clock)
    assert a.acquire_or_renew()
    clock.now += CONFIG.ttl_s - CONFIG.margin_s + 0.01
    assert not a.holds()
    with pytest.raises(LeadershipLost):
        a.check()


def test_release_hands_the_lease_over_at_once(engine: Engine) -> None:
    """A graceful shutdown releases the lease so a follower need not wait for the TTL."""
    a, b = LeaderLease(engine, CONFIG, holder="a"), LeaderLease(engine, CONFIG, holder="b")
    assert a.acquire_or_renew()
    a.release()
    assert b.acquire_or_renew()
    current = b.current()
    assert current is not None and current.holder == "b"


def test_lease_settings_that_could_not_work_are_refused() -> None:
    """A renewal period longer than half the TTL is a configuration error naming both values."""
    with pytest.raises(ValueError, match=r"renew_s \(5.0\) must be at most half of ttl_s \(6.0\)"):
        LeaseConfig(ttl_s=6.0, renew_s=5.0)
