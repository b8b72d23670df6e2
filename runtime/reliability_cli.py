"""`homeostat reliability load` and `homeostat reliability chaos`: the reliability suite's figures.

`load` starts a real daemon (`homeostat run`, SQLite, push source) as a subprocess on
loopback, posts samples to POST /v1/push from concurrent clients for N seconds, and samples
the daemon's resident memory every second: the figures are sustained samples/s (accepted by
the API and ingested by the loop), 429 answers (each must carry Retry-After) and RSS over
time. `chaos` runs the SIGKILL harness of `runtime.chaos`. Also runnable as
`python -m runtime.reliability_cli ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

REPO = Path(__file__).resolve().parent.parent
LOAD_TOKEN = "load-generator-operator-token"

app = typer.Typer(help="Reliability suite: load on the push API, SIGKILL chaos.", no_args_is_help=True)


@dataclass
class LoadReport:
    seconds: float = 0.0
    clients: int = 0
    batch: int = 0
    requests: int = 0
    accepted: int = 0
    ingested: int = 0
    throttled: int = 0
    throttled_without_retry_after: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, daemon RSS in MB), once a second."""

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def ingested_per_s(self) -> float:
        return self.ingested / self.seconds if self.seconds else 0.0

    def rss_summary(self) -> dict[str, float]:
        values = [mb for _, mb in self.rss_mb]
        if not values:
            return {}
        half = values[len(values) // 2 :]
        return {
            "start": values[0],
            "max": max(values),
            "end": values[-1],
            "second_half_growth": max(half) - min(half),
        }

    def render(self) -> str:
        rss = self.rss_summary()
        lines = [
            f"load: {self.clients} clients x {self.batch} samples/request for {self.seconds:.1f}s "
            f"against a real daemon (cpus={os.cpu_count()})",
            f"  accepted by API   {self.accepted_per_s:,.0f} samples/s "
            f"({self.accepted:,} total, {self.requests:,} requests)",
            f"  ingested by loop  {self.ingested_per_s:,.0f} samples/s ({self.ingested:,} total, from /metrics)",
            f"  backpressure      {self.throttled:,} answered 429 "
            f"({self.throttled_without_retry_after} without Retry-After)",
            f"  errors            {sum(self.errors.values())} {dict(self.errors) or ''}".rstrip(),
        ]
        if rss:
            lines.append(
                f"  daemon RSS        {rss['start']:.0f} MB at start, max {rss['max']:.0f} MB, "
                f"{rss['end']:.0f} MB at end; range over the second half {rss['second_half_growth']:.1f} MB"
            )
            step = max(1, len(self.rss_mb) // 10)
            lines.append("  RSS over time     " + ", ".join(f"{t:.0f}s {mb:.0f}" for t, mb in self.rss_mb[::step]))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 2),
            "accepted_per_s": round(self.accepted_per_s),
            "ingested_per_s": round(self.ingested_per_s),
            "requests": self.requests,
            "throttled": self.throttled,
            "throttled_without_retry_after": self.throttled_without_retry_after,
            "errors": self.errors,
            "rss_mb": self.rss_summary(),
        }


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def ingested_samples(url: str) -> int:
    """`homeostat_samples_ingested_total{source="push"}` from the daemon's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r'^homeostat_samples_ingested_total\{[^}]*source="push"[^}]*\} ([0-9.e+]+)$', text, re.M)
    return int(float(match.group(1))) if match else 0


@contextlib.contextmanager
def running_daemon(workdir: Path, *, port: int, max_buffered: int, poll_s: float) -> Iterator[subprocess.Popen[bytes]]:
    """`homeostat run` with one push source on SQLite in `workdir`; stopped with SIGTERM on exit."""
    tokens = workdir / "tokens.yaml"
    digest = hashlib.sha256(LOAD_TOKEN.encode()).hexdigest()
    tokens.write_text(f"identities:\n  - name: loadgen\n    roles: [operator]\n    token_sha256: {digest}\n")
    config = workdir / "homeostat.yaml"
    config.write_text(
        f"""database_url: sqlite:///{workdir / "homeostat.sqlite"}
constitution: {REPO / "constitution.yaml"}
sources:
  - type: push
    max_buffered: {max_buffered}
    retry_after_s: 1
auth:
  tokens_file: {tokens}
api:
  port: {port}
intervals: {{poll_s: {poll_s}, checkpoint_s: 30}}
grace_period_s: 2
"""
    )
    log = (workdir / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", "--config", str(config), "--log-level", "WARNING"],
        cwd=REPO,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not become ready; see {workdir / 'daemon.log'}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _body(rng: random.Random, batch: int, services: int) -> bytes:
    now = datetime.now(UTC)
    samples = [
        {
            "service": f"load-svc-{rng.randrange(services)}",
            "signal": rng.choice(("latency_p95_ms", "error_rate", "request_rate")),
            "ts": now.isoformat(),
            "value": 100.0 + rng.gauss(0, 3),
        }
        for _ in range(batch)
    ]
    return json.dumps({"samples": samples}).encode()


@dataclass(frozen=True)
class _Plan:
    url: str
    token: str
    seconds: float
    batch: int


async def _client(plan: _Plan, seed: int, report: LoadReport) -> None:
    url, token, seconds, batch = plan.url, plan.token, plan.seconds, plan.batch
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                r = await client.post("/v1/push", content=_body(rng, batch, 20), headers=headers)
            except httpx.HTTPError as exc:
                report.errors[type(exc).__name__] = report.errors.get(type(exc).__name__, 0) + 1
                continue
            report.requests += 1
            if r.status_code == 202:
                report.accepted += r.json()["accepted"]["samples"]
            elif r.status_code == 429:
                report.throttled += 1
                retry_after = r.headers.get("retry-after")
                if retry_after is None:
                    report.throttled_without_retry_after += 1
                # A well-behaved client waits as told; a tenth of it keeps the pressure on.
                await asyncio.sleep(float(retry_after or "1") / 10)
            else:
                report.errors[str(r.status_code)] = report.errors.get(str(r.status_code), 0) + 1


async def _sample_rss(pid: int, started: float, stop: asyncio.Event, report: LoadReport) -> None:
    while not stop.is_set():
        report.rss_mb.append((time.monotonic() - started, rss_mb(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def run_load(
    url: str, *, token: str, seconds: float, clients: int, batch: int, pid: int | None, seed: int = 0
) -> LoadReport:
    """Drive POST /v1/push at `url` for `seconds`; sample `pid`'s RSS once a second if given."""
    report = LoadReport(clients=clients, batch=batch)
    ingested_before = ingested_samples(url)

    async def main() -> None:
        stop = asyncio.Event()
        started = time.monotonic()
        sampler = asyncio.create_task(_sample_rss(pid, started, stop, report)) if pid else None
        plan = _Plan(url, token, seconds, batch)
        await asyncio.gather(*(_client(plan, seed + i, report) for i in range(clients)))
        report.seconds = time.monotonic() - started
        stop.set()
        if sampler is not None:
            await sampler

    asyncio.run(main())
    deadline = time.monotonic() + 15  # let the loop drain what is still buffered
    while True:
        report.ingested = ingested_samples(url) - ingested_before
        if report.ingested >= report.accepted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return report


@app.command()
def load(  # noqa: PLR0917 - typer maps each option to a parameter
    seconds: Annotated[float, typer.Option(help="How long to push (300 for the docs figure).")] = 10.0,
    clients: Annotated[int, typer.Option(help="Concurrent HTTP clients.")] = 4,
    batch: Annotated[int, typer.Option(help="Samples per request.")] = 500,
    max_buffered: Annotated[int, typer.Option(help="The daemon's push buffer (items).")] = 10_000,
    poll_s: Annotated[float, typer.Option(help="How often the daemon drains the push buffer (s).")] = 1.0,
    url: Annotated[
        str | None, typer.Option(help="Push to this running daemon instead of starting one (no RSS then).")
    ] = None,
    token: Annotated[str | None, typer.Option(envvar="HOMEOSTAT_TOKEN", help="Operator token for --url.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Sustained push load on loopback: samples/s, 429 + Retry-After under backpressure, daemon RSS over time."""
    if seconds <= 0 or clients < 1 or batch < 1:
        raise typer.BadParameter("--seconds must be > 0, --clients and --batch >= 1")
    if url is not None:
        if not token:
            raise typer.BadParameter("--url needs an operator token (--token or HOMEOSTAT_TOKEN)", param_hint="--token")
        report = run_load(url, token=token, seconds=seconds, clients=clients, batch=batch, pid=None)
    else:
        from runtime.chaos import free_port

        with tempfile.TemporaryDirectory(prefix="homeostat-load-") as tmp:
            port = free_port()
            with running_daemon(Path(tmp), port=port, max_buffered=max_buffered, poll_s=poll_s) as proc:
                report = run_load(
                    f"http://127.0.0.1:{port}",
                    token=LOAD_TOKEN,
                    seconds=seconds,
                    clients=clients,
                    batch=batch,
                    pid=proc.pid,
                )
    typer.echo(json.dumps(report.as_dict()) if json_out else report.render())


@app.command()
def chaos(
    kills: Annotated[int, typer.Option(help="SIGKILLs of the loop's process.")] = 100,
    seed: Annotated[int, typer.Option(help="Seeds the kill moments.")] = 12,
    scenario: Annotated[str, typer.Option(help="Built-in scenario name or YAML path.")] = "provider_outage",
    max_life_s: Annotated[float, typer.Option(help="A life lasts up to this long after recovery (s).")] = 0.4,
) -> None:
    """SIGKILL a process running the control loop at random points; check the invariants after each kill."""
    from runtime.chaos import run_chaos

    path = Path(scenario)
    if path.suffix not in (".yaml", ".yml"):
        path = REPO / "simulations" / "scenarios" / f"{scenario}.yaml"
    if not path.exists():
        raise typer.BadParameter(f"no scenario at {path}", param_hint="--scenario")
    with tempfile.TemporaryDirectory(prefix="homeostat-chaos-") as tmp:
        report = run_chaos(path, Path(tmp), kills=kills, seed=seed, max_life_s=max_life_s)
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.violations:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
