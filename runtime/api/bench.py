"""Push-endpoint throughput benchmark: ``uv run python -m runtime.api.bench``.

Starts the API in a child process on loopback (the push buffer drained every `--drain-ms`, as
the loop would), posts JSON batches from concurrent clients for `--seconds`, and prints
accepted samples/s, 429 answers, request latency and the server's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

_TOKEN = "bench-token"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _server(sock: socket.socket, max_buffered: int, drain_ms: float) -> None:
    import uvicorn

    from domain import SystemClock
    from runtime.api import DaemonStatus, create_app
    from runtime.auth import TokenAuthority
    from runtime.metrics import Metrics
    from runtime.sources import PushSource

    class NoIncidents:
        def list_incidents(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
            return []

        def get_incident(self, incident_id: str) -> dict[str, Any] | None:
            return None

        def pending_approvals(self) -> list[dict[str, Any]]:
            return []

        def approve(self, incident_id: str, who: Any, comment: str) -> dict[str, Any]:
            raise NotImplementedError

        def reject(self, incident_id: str, who: Any, reason: str) -> dict[str, Any]:
            raise NotImplementedError

    push = PushSource(max_buffered=max_buffered, retry_after_s=1)
    metrics = Metrics()
    app = create_app(
        NoIncidents(),
        auth=TokenAuthority.from_tokens({"bench": (_TOKEN, ["operator"])}),
        push=push,
        alertmanager=None,
        status=DaemonStatus(SystemClock(), [], db_check=lambda: None),
        metrics=metrics,
    )

    async def drain() -> None:
        while True:
            await asyncio.sleep(drain_ms / 1000)
            batch = await push.poll(datetime.now(UTC))
            metrics.record_batch("push", batch)

    async def main() -> None:
        server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        task = asyncio.create_task(drain())
        await server.serve(sockets=[sock])
        task.cancel()

    asyncio.run(main())


def _body(batch: int, offset: int) -> bytes:
    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
    samples = [
        {
            "service": f"svc-{i % 20}",
            "signal": "latency_p95_ms",
            "ts": (t0 + timedelta(milliseconds=i)).isoformat(),
            "value": 100.0 + i % 7,
        }
        for i in range(batch)
    ]
    import json

    return json.dumps({"samples": samples}).encode()


async def _client(url: str, seconds: float, batch: int, stats: dict[str, Any]) -> None:
    body = _body(batch, 0)
    headers = {"Authorization": f"Bearer {_TOKEN}", "Content-Type": "application/json"}
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            r = await client.post("/v1/push", content=body, headers=headers)
            stats["latency"].append(time.perf_counter() - started)
            if r.status_code == 202:
                stats["accepted"] += r.json()["accepted"]["samples"]
            elif r.status_code == 429:
                stats["throttled"] += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")) / 10)
            else:
                stats["errors"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500, help="samples per request")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-buffered", type=int, default=10_000)
    parser.add_argument("--drain-ms", type=float, default=100.0)
    args = parser.parse_args()

    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_server, args=(sock, args.max_buffered, args.drain_ms), daemon=True)
    proc.start()
    assert proc.pid is not None
    for _ in range(100):
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    rss_start = _rss_mb(proc.pid)
    stats: dict[str, Any] = {"accepted": 0, "throttled": 0, "errors": 0, "latency": []}

    async def run() -> None:
        await asyncio.gather(*(_client(url, args.seconds, args.batch, stats) for _ in range(args.clients)))

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    rss_end = _rss_mb(proc.pid)
    proc.terminate()
    proc.join(5)
    lat = sorted(stats["latency"])
    p99 = lat[int(len(lat) * 0.99) - 1] if lat else float("nan")
    print(
        f"push bench: {args.clients} clients x {args.batch} samples/request for {elapsed:.1f}s (cpus={os.cpu_count()})"
    )
    print(f"  accepted        {stats['accepted'] / elapsed:,.0f} samples/s ({stats['accepted']:,} total)")
    print(f"  requests        {len(lat):,} ({stats['throttled']:,} answered 429, {stats['errors']} errors)")
    print(f"  latency         p50 {statistics.median(lat) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(f"  server RSS      {rss_start:.0f} MB at start, {rss_end:.0f} MB at end")


if __name__ == "__main__":
    main()
