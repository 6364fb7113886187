"""Consent-gate throughput: GET /v1/contacts/{c}/can-send beside a bare handler doing one Redis GET.

Creates a fresh PostgreSQL database, seeds opted-in contacts in bulk (`tests/fakes/consent_seed.py`,
the rows the ledger writes), starts `optin-bot web` against it and the real Redis, and
`bench/bare_server.py` with the same Redis (one GET per request, on keys seeded for the same
contacts). Both are loaded the same way, alternating round by round so a noisy moment hurts both:
`--concurrency` clients asking about random seeded contacts (one in ten unknown) for
`--seconds` per round. Prints checks/s and p50/p99 per server and concurrency, the ratio, and the
goals: >= 5,000 checks/s, p99 < 10 ms. Loopback only, bounded in time.

    python bench/gate.py [--contacts 10000] [--concurrency 4,32] [--rounds 3] [--seconds 5]

Latency grows with the number of requests in flight (Little's law: at 32 in flight and
5,000/s, the mean alone is 6.4 ms), so the p99 goal is read at the lower concurrency and the
rate at the higher one. The load generator shares the 2 cores with the servers; the baseline
measured in the same run shows that ceiling. Redis: REDIS_URL or redis://127.0.0.1:6379/13
(flushed); PostgreSQL: TEST_DATABASE_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/test
(a database is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import Result, merge, start, stop, wait_up  # noqa: E402
from bench.support import admin, free_port  # noqa: E402
from bot.db.engine import create_engine  # noqa: E402
from bot.db.migrate import migrate  # noqa: E402
from tests.fakes.consent_seed import seed_opted_in, wa_id_of  # noqa: E402

TOKEN = "bench-api-token-0123456789"
OPTIN_BOT_WEB = [sys.executable, "-m", "bot", "--log-level", "WARNING", "web", "--port"]
GOAL_RATE = 5000.0
GOAL_P99_MS = 10.0


async def load(
    name: str, port: int, contacts: int, concurrency: int, seconds: float, seed: int
) -> Result:
    """`concurrency` clients asking can-send about random contacts for `seconds`."""
    rng = random.Random(seed)
    latencies: list[float] = []
    failed = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"http://127.0.0.1:{port}/v1/contacts"
    connector = aiohttp.TCPConnector(limit=concurrency)
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal failed
            while time.monotonic() < deadline:
                n = rng.randrange(contacts + contacts // 9)  # about one in ten unknown
                began = time.perf_counter()
                async with session.get(
                    f"{base}/{wa_id_of(n)}/can-send", params={"category": "marketing"}
                ) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append(time.perf_counter() - began)
                    else:
                        failed += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Result(name, len(latencies), failed, elapsed, latencies)


async def run(args: argparse.Namespace) -> None:
    admin_url = (
        os.environ.get("TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"
    name = f"optin_bench_{uuid.uuid4().hex[:10]}"
    database_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.flushdb()
    await admin(admin_url, f'CREATE DATABASE "{name}"')
    engine = create_engine(database_url)
    try:
        await migrate(database_url)
        began = time.monotonic()
        await seed_opted_in(engine, args.contacts, since=datetime.now(UTC) - timedelta(days=30))
        for first in range(0, args.contacts, 1000):
            await redis.mset(
                {
                    f"bench:consent:{wa_id_of(n)}": "1"
                    for n in range(first, min(first + 1000, args.contacts))
                }
            )
        print(f"seeded {args.contacts:,} opted-in contacts in {time.monotonic() - began:.1f}s")
        await engine.dispose()
        await measure(args, database_url, redis_url)
    finally:
        await engine.dispose()
        await redis.flushdb()
        await redis.aclose()
        await admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def measure(args: argparse.Namespace, database_url: str, redis_url: str) -> None:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WHATSAPP_")},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "API_TOKEN": TOKEN,
        "LEDGER_KEY": "bench-ledger-key-0123456789abcdef",
        "WHATSAPP_APP_SECRET": "bench-secret",
        "PYTHONPATH": str(ROOT),
    }
    bare_port, ours_port = free_port(), free_port()
    servers = {
        "bare Redis GET": (
            bare_port,
            start(
                [sys.executable, str(ROOT / "bench" / "bare_server.py"), str(bare_port), redis_url],
                env,
            ),
        ),
        "optin-bot web": (
            ours_port,
            start(
                [*OPTIN_BOT_WEB, str(ours_port)],
                env,
            ),
        ),
    }
    results: dict[tuple[int, str], list[Result]] = {}
    try:
        for port, proc in servers.values():
            await wait_up(port, proc)
            await load("warm-up", port, args.contacts, max(concurrencies), 2.0, 0)
        for n in range(args.rounds):
            for concurrency in concurrencies:
                for name, (port, _) in servers.items():
                    results.setdefault((concurrency, name), []).append(
                        await load(name, port, args.contacts, concurrency, args.seconds, n)
                    )
    finally:
        for _, proc in servers.values():
            stop(proc)
    report(results, concurrencies, args)


def report(
    results: dict[tuple[int, str], list[Result]], concurrencies: list[int], args: argparse.Namespace
) -> None:
    print(
        f"{'concurrency':>11}  {'server':<16}{'checks/s':>10}{'p50 ms':>9}{'p99 ms':>9}",
        f"{'failed':>8}",
        sep="",
    )
    merged: dict[tuple[int, str], Result] = {}
    for (concurrency, name), rounds in results.items():
        r = merged[concurrency, name] = merge(name, rounds)
        print(
            f"{concurrency:>11}  {r.name:<16}{r.rate:>10.0f}{r.percentile(50):>9.2f}"
            f"{r.percentile(99):>9.2f}{r.failed:>8}"
        )
    for concurrency in concurrencies:
        bare, ours = merged[concurrency, "bare Redis GET"], merged[concurrency, "optin-bot web"]
        print(
            f"concurrency {concurrency}: optin-bot / bare = {ours.rate / bare.rate:.2f}x"
            if bare.rate
            else f"concurrency {concurrency}: the baseline answered nothing"
        )
    best = max(merged[c, "optin-bot web"].rate for c in concurrencies)
    p99 = merged[min(concurrencies), "optin-bot web"].percentile(99)
    print(
        f"goal rate >= {GOAL_RATE:.0f}/s: {best:.0f}/s ({best / GOAL_RATE:.2f}x) "
        f"{'MET' if best >= GOAL_RATE else 'MISSED'}; goal p99 < {GOAL_P99_MS:.0f} ms at "
        f"concurrency {min(concurrencies)}: {p99:.2f} ms {'MET' if p99 < GOAL_P99_MS else 'MISSED'}"
    )
    print(
        f"{args.contacts:,} contacts, {args.rounds} alternating rounds of {args.seconds:.0f}s, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (1 min)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--concurrency", default="4,32", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per round")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
