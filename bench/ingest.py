"""Webhook ingest throughput: optin-bot's POST /webhook beside a bare aiohttp handler.

Starts both servers as subprocesses on 127.0.0.1 (one at a time, the same load for each), posts
signed, Meta-shaped webhooks with distinct message ids from this process, and prints accepted
webhooks/s with p50/p99 latency for each and their ratio. optin-bot runs its `web` role against
the real Redis (REDIS_URL, default redis://127.0.0.1:6379/13, flushed first) so every 200 is a
durable stream entry. The load is bounded in count and time and goes to loopback only.

    python bench/ingest.py [--requests 20000] [--rounds 5] [--concurrency 64] [--seconds 30]
                           [--stops 3000] [--workers 1]

Goal: optin-bot >= 0.5 x the bare handler's rate.

End to end (`--stops N`, 0 skips it): N opted-in customers are seeded into a fresh PostgreSQL
database (TEST_DATABASE_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/test; created and
dropped), an `optin-bot web` and `--workers` `optin-bot worker` processes run against it, every
customer sends STOP through the webhook, and the clock stops when every customer has a
`withdrawn` ledger row committed and a confirmation queued (an outbound transcript row; no sender
runs, so it stays queued). Prints STOPs/s fully processed beside the rate at which the same
webhooks were merely accepted in the same run. Goal: >= 1,000 STOPs/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import free_port  # noqa: E402
from bot.signature import sign  # noqa: E402

SECRET = "bench-secret"
GOAL_STOPS_PER_SECOND = 1000.0


@dataclass
class Result:
    name: str
    ok: int
    failed: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def merge(name: str, rounds: list[Result]) -> Result:
    return Result(
        name,
        sum(r.ok for r in rounds),
        sum(r.failed for r in rounds),
        sum(r.seconds for r in rounds),
        [x for r in rounds for x in r.latencies],
    )


def webhook(i: int, *, wa_id: str | None = None, text: str | None = None) -> bytes:
    wa_id = wa_id or f"1555{i % 5000:07d}"
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "106540352242922",
                                },
                                "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id}],
                                "messages": [
                                    {
                                        "from": wa_id,
                                        "id": f"wamid.{uuid.uuid4().hex}",
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": text or f"message {i}"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


async def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("server did not come up")


async def load(
    name: str, port: int, bodies: list[tuple[bytes, str]], concurrency: int, seconds: float
) -> Result:
    url = f"http://127.0.0.1:{port}/webhook"
    latencies: list[float] = []
    failed = 0
    next_index = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal next_index, failed
            while next_index < len(bodies) and time.monotonic() < deadline:
                body, signature = bodies[next_index]
                next_index += 1
                started = time.perf_counter()
                async with session.post(
                    url,
                    data=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": signature,
                    },
                ) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(name, len(latencies), failed, elapsed, latencies)


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0, help="cap per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stops", type=int, default=3000, help="end-to-end STOPs (0: skip)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes end to end")
    args = parser.parse_args()
    if args.requests:
        await ingest(args)
    if args.stops:
        await end_to_end(args)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")


async def ingest(args: argparse.Namespace) -> None:
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

    import redis.asyncio as redis_async

    client = redis_async.from_url(redis_url)
    await client.flushdb()
    await client.aclose()
    bodies = [(b, sign(SECRET, b)) for b in (webhook(i) for i in range(args.requests))]

    warm = [(b, sign(SECRET, b)) for b in (webhook(i) for i in range(500))]
    per_round = max(1, len(bodies) // args.rounds)
    results: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "WHATSAPP_APP_SECRET": SECRET,
            "REDIS_URL": redis_url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
        }
        for key in ("WHATSAPP_ACCESS_TOKEN", "GRAPH_API_URL"):
            env.pop(key, None)
        subprocess.run(  # noqa: ASYNC221 - setup before any load is sent
            [sys.executable, "-m", "bot", "migrate"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        bare_port, ours_port = free_port(), free_port()
        servers = {
            "bare aiohttp": (
                bare_port,
                start(
                    [sys.executable, str(ROOT / "bench" / "bare_server.py"), str(bare_port)], env
                ),
            ),
            "optin-bot web": (
                ours_port,
                start(
                    [
                        sys.executable,
                        "-m",
                        "bot",
                        "--log-level",
                        "WARNING",
                        "web",
                        "--port",
                        str(ours_port),
                    ],
                    env,
                ),
            ),
        }
        try:
            for port, proc in servers.values():
                await wait_up(port, proc)
                await load("warm-up", port, warm, args.concurrency, args.seconds)
            # Alternate the two, round after round, so a noisy moment hurts both alike.
            for n in range(args.rounds):
                chunk = bodies[n * per_round : (n + 1) * per_round]
                for name, (port, _) in servers.items():
                    results.setdefault(name, []).append(
                        await load(name, port, chunk, args.concurrency, args.seconds)
                    )
        finally:
            for _, proc in servers.values():
                stop(proc)

    merged = [merge(name, rounds) for name, rounds in results.items()]
    print(f"{'server':<16}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    for r in merged:
        print(
            f"{r.name:<16}{r.rate:>12.0f}{r.percentile(50):>9.2f}{r.percentile(99):>9.2f}"
            f"{r.failed:>8}"
        )
    bare, ours = merged
    ratios = [o.rate / b.rate for b, o in zip(*results.values(), strict=True) if b.rate]
    ratio = statistics.median(ratios) if ratios else 0.0
    print(
        f"ratio optin-bot / bare: {ratio:.2f}x (goal >= 0.50x) "
        f"{'MET' if ratio >= 0.5 else 'MISSED'}; median of {len(ratios)} alternating rounds "
        f"({', '.join(f'{r:.2f}' for r in ratios)}); {len(bodies)} requests each, "
        f"concurrency {args.concurrency}, {os.cpu_count()} cores"
    )
    if statistics.mean([bare.failed, ours.failed]) > 0:
        print("note: some requests failed; see the failed column")


async def end_to_end(args: argparse.Namespace) -> None:
    """STOPs/s fully processed: ledger row committed and confirmation queued, on PostgreSQL."""
    from datetime import UTC, datetime, timedelta

    import asyncpg
    import redis.asyncio as redis_async
    from sqlalchemy.engine import make_url

    from bot.db.engine import create_engine
    from bot.db.migrate import migrate
    from tests.fakes.consent_seed import seed_opted_in, wa_id_of

    admin_url = make_url(
        os.environ.get("TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    name = f"optin_bench_{uuid.uuid4().hex[:10]}"
    database_url = admin_url.set(database=name).render_as_string(hide_password=False)
    pg = {
        "host": admin_url.host,
        "port": admin_url.port or 5432,
        "user": admin_url.username or "postgres",
        "password": admin_url.password,
    }
    admin = await asyncpg.connect(**pg, database=admin_url.database or "postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    redis = redis_async.from_url(redis_url)
    await redis.flushdb()
    try:
        await migrate(database_url)
        engine = create_engine(database_url)
        try:
            await seed_opted_in(engine, args.stops, since=datetime.now(UTC) - timedelta(days=30))
        finally:
            await engine.dispose()
        bodies = [
            (b, sign(SECRET, b))
            for b in (webhook(n, wa_id=wa_id_of(n), text="STOP") for n in range(args.stops))
        ]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WHATSAPP_")},
            "WHATSAPP_APP_SECRET": SECRET,
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(ROOT),
        }
        port = free_port()
        command = [sys.executable, "-m", "bot", "--log-level", "WARNING"]
        procs = [start([*command, "web", "--port", str(port)], env)]
        procs += [start([*command, "worker"], env) for _ in range(args.workers)]
        db = await asyncpg.connect(**pg, database=name)
        try:
            await wait_up(port, procs[0])
            await asyncio.sleep(2)  # the workers take their shards
            done_sql = (
                "SELECT (SELECT count(DISTINCT contact_id) FROM consent_events "
                "WHERE action = 'withdrawn'), (SELECT count(DISTINCT contact_id) FROM "
                "transcript_entries WHERE direction = 'outbound')"
            )
            began = time.perf_counter()
            accepted = await load("STOPs", port, bodies, args.concurrency, 600)
            accepted_in = time.perf_counter() - began
            withdrawn = confirmed = 0
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                withdrawn, confirmed = await db.fetchrow(done_sql)
                if withdrawn >= args.stops and confirmed >= args.stops:
                    break
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a service process exited")
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - began
        finally:
            await db.close()
            for proc in procs:
                stop(proc)
    finally:
        await redis.flushdb()
        await redis.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    rate = withdrawn / elapsed if elapsed else 0.0
    print(
        f"end to end: {args.stops} STOPs, {accepted.ok} accepted in {accepted_in:.2f}s "
        f"({accepted.ok / accepted_in:.0f}/s, p99 {accepted.percentile(99):.1f} ms); "
        f"{withdrawn} ledger rows + {confirmed} confirmations queued after {elapsed:.2f}s"
    )
    print(
        f"STOPs/s fully processed: {rate:.0f} (goal >= {GOAL_STOPS_PER_SECOND:.0f}/s: "
        f"{rate / GOAL_STOPS_PER_SECOND:.2f}x "
        f"{'MET' if rate >= GOAL_STOPS_PER_SECOND else 'MISSED'}); "
        f"1 web + {args.workers} worker process(es)"
    )


if __name__ == "__main__":
    asyncio.run(main())
