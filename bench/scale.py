"""End-to-end STOP throughput with 1, 2 and 4 `optin-bot worker` processes, beside 1 worker.

A STOP counts as processed when its flow ran to the end: the `withdrawn` ledger rows (one per
category) are committed and the confirmation is queued for the sender (its outbound transcript
row written, the stream entry added). For each worker count the script takes a fresh PostgreSQL
database (created, migrated, dropped afterwards) and a flushed Redis, queues `--stops` STOP
webhooks from distinct customers through an `optin-bot web` process with no worker running, then
starts the workers and times them from the first committed row to the last; so the figure is the
workers' rate, not the webhook's or the processes' start-up. No sender runs and nothing leaves
the machine.

    python bench/scale.py [--stops 1000] [--workers 1,2,4] [--timeout 300]

Redis: REDIS_URL or redis://127.0.0.1:6379/12 (flushed); PostgreSQL: TEST_DATABASE_URL or
postgresql+asyncpg://postgres@127.0.0.1:5432/test (only used to create and drop the databases).
Each line prints the rate and its ratio to the 1-worker rate measured in the same run; on a
machine with fewer cores than workers (PostgreSQL and Redis share them) the ratio flattens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
from redis.asyncio import Redis
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import admin, free_port  # noqa: E402
from bench.support import processes as started  # noqa: E402
from bot.db.engine import create_engine  # noqa: E402
from bot.db.migrate import migrate  # noqa: E402
from bot.signature import SIGNATURE_HEADER, sign  # noqa: E402

SECRET = "bench-secret"
PHONE = "106540352242922"
CATEGORIES = 4


def stop_webhook(n: int, run: str) -> bytes:
    wa_id = f"1999{n:07d}"
    message = {
        "from": wa_id,
        "id": f"wamid.scale.{run}.{n}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "STOP"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
        "messages": [message],
    }
    change = {"field": "messages", "value": value}
    entry = {"id": "102290129340398", "changes": [change]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def bot(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", "--log-level", "ERROR", *args]


async def queue_stops(port: int, stops: int, run: str, web: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        deadline = time.monotonic() + 60
        while True:
            if web.poll() is not None:
                raise SystemExit("optin-bot web exited at start")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("optin-bot web did not answer /healthz within 60 s")
            await asyncio.sleep(0.2)
        semaphore = asyncio.Semaphore(64)

        async def post(n: int) -> None:
            body = stop_webhook(n, run)
            headers = {
                SIGNATURE_HEADER: sign(SECRET, body),
                "Content-Type": "application/json",
            }
            async with (
                semaphore,
                session.post(f"http://127.0.0.1:{port}/webhook", data=body, headers=headers) as r,
            ):
                if r.status != 200:
                    raise SystemExit(f"webhook answered {r.status}")

        await asyncio.gather(*(post(n) for n in range(stops)))


async def processed(engine: AsyncEngine) -> tuple[int, int]:
    """Committed `withdrawn` rows and queued outbound messages so far."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT count(*) FROM consent_events WHERE action = 'withdrawn'")
            )
        ).scalar_one()
        queued = (
            await connection.execute(
                text("SELECT count(*) FROM transcript_entries WHERE direction = 'outbound'")
            )
        ).scalar_one()
    return int(rows), int(queued)


async def one_run(args: argparse.Namespace, workers: int, admin_url: str, redis_url: str) -> float:
    """STOPs/s of `workers` worker processes; NaN when they did not finish in time."""
    name = f"optin_scale_{uuid.uuid4().hex[:10]}"
    database_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    await admin(admin_url, f'CREATE DATABASE "{name}"')
    engine = create_engine(database_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WHATSAPP_ACCESS_TOKEN": "bench-token",
        "WHATSAPP_APP_SECRET": SECRET,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE,
        "GRAPH_API_URL": "http://127.0.0.1:9/v23.0",  # no sender runs: never contacted
        "PSEUDONYM_KEY": "bench-pseudonym-key-0123456789abcdef",
        "LEDGER_KEY": "bench-ledger-key-0123456789abcdef",
        "BUSINESS_NAME": "Acme",
        "PYTHONPATH": str(ROOT),
    }
    try:
        await migrate(database_url)
        port = free_port()
        with started([bot("web", "--port", str(port))], env) as (web,):
            await queue_stops(port, args.stops, name, web)
        done_rows = args.stops * CATEGORIES
        with started([bot("worker")] * workers, env) as procs:
            first = end = None
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a worker exited; run it by hand to see why")
                rows, queued = await processed(engine)
                now = time.monotonic()
                if first is None and rows:
                    first = now
                if rows >= done_rows and queued >= args.stops:
                    end = now
                    break
                await asyncio.sleep(0.1)
        if first is None or end is None or end <= first:
            return float("nan")
        return float(args.stops) / (end - first)
    finally:
        await engine.dispose()
        await redis.flushdb()
        await redis.aclose()
        await admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(args: argparse.Namespace) -> int:
    admin_url = (
        os.environ.get("TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/12"
    counts = [int(w) for w in args.workers.split(",")]
    if 1 not in counts:
        counts.insert(0, 1)  # the baseline
    print(f"{args.stops:,} STOPs per run; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    rates: dict[int, float] = {}
    for workers in counts:
        rates[workers] = await one_run(args, workers, admin_url, redis_url)
        baseline = rates.get(1, float("nan"))
        print(
            f"  {workers} worker{'s' if workers > 1 else ' '}: {rates[workers]:8.1f} STOPs/s"
            f"  x{rates[workers] / baseline:.2f} of 1 worker",
            flush=True,
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if all(r == r for r in rates.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stops", type=int, default=1000, help="STOPs per run")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
