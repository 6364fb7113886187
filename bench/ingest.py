"""Webhook ingest throughput: optin-bot's POST /webhook beside a bare aiohttp handler.

Starts both servers as subprocesses on 127.0.0.1 (one at a time, the same load for each), posts
signed, Meta-shaped webhooks with distinct message ids from this process, and prints accepted
webhooks/s with p50/p99 latency for each and their ratio. optin-bot runs its `web` role against
the real Redis (REDIS_URL, default redis://127.0.0.1:6379/13, flushed first) so every 200 is a
durable stream entry. The load is bounded in count and time and goes to loopback only.

    python bench/ingest.py [--requests 20000] [--rounds 5] [--concurrency 64] [--seconds 30]

Goal: optin-bot >= 0.5 x the bare handler's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
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

from bot.signature import sign  # noqa: E402

SECRET = "bench-secret"


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhook(i: int) -> bytes:
    wa_id = f"1555{i % 5000:07d}"
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
                                        "text": {"body": f"message {i}"},
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    asyncio.run(main())
