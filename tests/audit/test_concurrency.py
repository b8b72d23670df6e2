"""Concurrent writers, in threads and in separate processes, extend one chain and never fork it."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from runtime.audit import AuditLog
from tests.audit.helpers import T0


def _write_in_child(url: str, name: str, n: int, go: Any) -> None:
    """A writer process: opens its own AuditLog, waits for the start signal, appends n records."""
    with AuditLog(url) as log:
        go.wait(30)
        for i in range(n):
            log.append("observation", {"writer": name, "i": i}, incident_id=name, ts=T0)


def _assert_one_chain(url: str, expected: int) -> None:
    with AuditLog(url, create=False) as log:
        report = log.verify()
        assert report.ok, report.message
        assert report.checked == expected
        records = list(log.records())
    assert [r.seq for r in records] == list(range(1, expected + 1))
    assert len({r.prev_hash for r in records}) == expected  # no two records share a parent: no fork


class TestConcurrentWriters:
    def test_threads_sharing_one_handle(self, db_url: str) -> None:
        """Eight threads appending through one AuditLog produce one contiguous, verifying chain."""
        with AuditLog(db_url) as log:
            errors: list[BaseException] = []

            def write(name: str) -> None:
                try:
                    for i in range(20):
                        log.append("observation", {"writer": name, "i": i}, incident_id=name, ts=T0)
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

            threads = [threading.Thread(target=write, args=(f"t{k}",)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
        _assert_one_chain(db_url, 160)

    def test_threads_with_their_own_handles(self, db_url: str) -> None:
        """Threads each opening their own AuditLog (as replicas would) still share one chain."""
        AuditLog(db_url).close()
        errors: list[BaseException] = []

        def write(name: str) -> None:
            try:
                with AuditLog(db_url) as log:
                    for i in range(30):
                        log.append("observation", {"writer": name, "i": i}, incident_id=name, ts=T0)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(f"h{k}",)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        _assert_one_chain(db_url, 120)

    def test_two_processes(self, db_url: str) -> None:
        """Two processes appending to the same database at once produce one unforked chain."""
        AuditLog(db_url).close()
        ctx = multiprocessing.get_context("fork")  # children inherit the imports: fast start
        go = ctx.Event()
        procs = [ctx.Process(target=_write_in_child, args=(db_url, name, 100, go)) for name in ("proc-a", "proc-b")]
        for p in procs:
            p.start()
        go.set()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        _assert_one_chain(db_url, 200)
