"""The cost of keeping the embedded store across restarts.

Runs `optin-bot serve` on the embedded defaults (SQLite file, `REDIS_URL=memory://`) twice in a
scratch folder, the same load each time: once with `EMBEDDED_REDIS_FILE=off` (the store in memory
only: the baseline) and once with the default file, where every acknowledged write waits for a
snapshot on disk. Each run first plants `--keys` windows (the keyspace a snapshot copies), then
posts `--requests` STOPs from distinct customers at `--concurrency`. Prints, for each, the
webhooks acknowledged per second with p50/p99 latency, and the STOPs fully processed per second
(every event handled by the worker in the same process, from the first post until
`optin_events_processed_total` counts them all), and the ratios. Loopback only.

    python bench/embedded.py [--requests 2000] [--concurrency 16] [--keys 2000]

Goal: persisted >= 0.5 x the in-memory rate end to end at 2,000 keys (the embedded mode is for
one process on one machine; a Redis server is the answer beyond that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import Result, load, start, stop, wait_up, webhook
from support import free_port

ROOT = Path(__file__).resolve().parents[1]


async def plant_windows(port: int, keys: int, concurrency: int) -> None:
    """`keys` customers write once (each opens a 24-hour window key), before the clock starts."""
    bodies = [(webhook(i, wa_id=f"1666{i:07d}", text="hello"), "") for i in range(keys)]
    await load("plant", port, bodies, concurrency, 600)


async def processed(port: int) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("optin_events_processed_total{")
    )


async def reach(port: int, target: float) -> None:
    """Until the worker has handled `target` events in all (at most ten minutes)."""
    for _ in range(6000):
        if await processed(port) >= target:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"the worker did not reach {target} events")


async def run(name: str, args: argparse.Namespace, snapshot: str) -> tuple[Result, float]:
    with tempfile.TemporaryDirectory(prefix="optin-bench-embedded-") as folder:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))},
            "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/optin.db",
            "REDIS_URL": "memory://",
            "EMBEDDED_REDIS_FILE": snapshot,
        }
        proc = start([sys.executable, "-m", "bot", "serve", "--port", str(port)], env)
        try:
            await wait_up(port, proc)
            await plant_windows(port, args.keys, args.concurrency)
            await reach(port, args.keys)
            before = await processed(port)
            bodies = [
                (webhook(i, wa_id=f"1777{i:07d}", text="STOP"), "") for i in range(args.requests)
            ]
            started = time.perf_counter()
            accepted = await load(name, port, bodies, args.concurrency, 300)
            await reach(port, before + accepted.ok)
            return accepted, accepted.ok / (time.perf_counter() - started)
        finally:
            stop(proc)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--keys", type=int, default=2000)
    args = parser.parse_args()
    memory, memory_e2e = await run("in memory only", args, "off")
    persisted, persisted_e2e = await run("saved before each acknowledgement", args, "")
    for result, e2e in ((memory, memory_e2e), (persisted, persisted_e2e)):
        print(
            f"{result.name:34} acknowledged {result.rate:7.1f}/s (p50 "
            f"{result.percentile(50):5.1f} ms, p99 {result.percentile(99):6.1f} ms, failed "
            f"{result.failed}); STOPs processed end to end {e2e:6.1f}/s"
        )
    print(
        f"persisted / in memory with {args.keys} keys planted: acknowledged "
        f"{persisted.rate / memory.rate:.2f}x, end to end {persisted_e2e / memory_e2e:.2f}x "
        f"(goal >= 0.5x end to end)"
    )


if __name__ == "__main__":
    asyncio.run(main())
