"""Campaign dispatch throughput: 100,000 recipients at 1,000 messages/s, and the memory it takes.

Seeds opted-in contacts in bulk into a fresh PostgreSQL database (`tests/fakes/consent_seed.py`:
the same rows the ledger writes, hash chains included, a thousand contacts per statement), starts
a bare Graph stand-in (`bench/graph_server.py`) and `optin-bot sender` processes (the sender
loop and the campaign dispatcher, as in production) against it and the real Redis, creates and
starts a campaign through the same service the API uses, and watches until every recipient's
message has arrived. No worker runs: the re-consent requests wait on the inbound streams, which
is the dispatcher's work done; the flows are measured elsewhere. Loopback only, bounded in time.

    python bench/campaign.py [--recipients 100000] [--rate 1000] [--senders 1]

Prints the achieved rate (messages arrived / time from the first to the last), its ratio to the
campaign's rate, the senders' peak RSS, the machine's load average at the start and the end (the
rate depends on it: on a shared machine the senders get only their share of the cores), the
senders' CPU time per message (what does not depend on it), and where the time went.
Goal: >= 95 % of the rate, < 300 MB. Redis: REDIS_URL or redis://127.0.0.1:6379/9 (flushed);
PostgreSQL: TEST_DATABASE_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/test (a database
is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.support import admin, free_port, processes  # noqa: E402
from bot.campaigns.repository import CampaignRepository  # noqa: E402
from bot.campaigns.service import CampaignService  # noqa: E402
from bot.campaigns.throttle import Throttle  # noqa: E402
from bot.db.engine import create_engine, session_factory  # noqa: E402
from bot.db.migrate import migrate  # noqa: E402
from bot.streams import OUTBOUND_STREAM  # noqa: E402
from tests.fakes.consent_seed import seed_opted_in  # noqa: E402

GOAL_RATIO = 0.95
GOAL_RSS_MB = 300.0
PHONE = "106540352242922"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in kB from /proc."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class Timeline:
    started: float = 0.0
    all_queued: float | None = None
    peak_backlog: int = 0
    peak_rss_kb: dict[int, int] = field(default_factory=dict)
    load_at_start: tuple[float, float, float] = (0.0, 0.0, 0.0)


async def run(args: argparse.Namespace) -> int:
    admin_url = (
        os.environ.get("TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/9"
    name = f"optin_bench_{uuid.uuid4().hex[:10]}"
    database_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    redis = Redis.from_url(redis_url, decode_responses=True)
    await redis.flushdb()
    await admin(admin_url, f'CREATE DATABASE "{name}"')
    engine = create_engine(database_url)
    try:
        await migrate(database_url)
        began = time.monotonic()
        await seed_opted_in(engine, args.recipients, since=datetime.now(UTC) - timedelta(days=400))
        seeded = time.monotonic() - began
        print(f"seeded {args.recipients:,} opted-in contacts in {seeded:.1f}s", flush=True)
        return await dispatch(args, engine, database_url, redis_url, redis)
    finally:
        await engine.dispose()
        await redis.flushdb()
        await redis.aclose()
        await admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def dispatch(
    args: argparse.Namespace, engine: Any, database_url: str, redis_url: str, redis: Redis
) -> int:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WHATSAPP_ACCESS_TOKEN": "bench-token",
        "WHATSAPP_APP_SECRET": "bench-secret",
        "WHATSAPP_PHONE_NUMBER_ID": PHONE,
        "GRAPH_API_URL": f"http://127.0.0.1:{port}/v25.0",
        "SEND_RATE": str(min(1000.0, args.rate)),
        "PSEUDONYM_KEY": "bench-pseudonym-key-0123456789abcdef",
        "LEDGER_KEY": "bench-ledger-key-0123456789abcdef",
        "PYTHONPATH": str(ROOT),
    }
    commands = [[sys.executable, "bench/graph_server.py", str(port)]]
    commands += [[sys.executable, "-m", "bot", "--log-level", "ERROR", "sender"]] * args.senders
    service = CampaignService(
        CampaignRepository(session_factory(engine)),
        Throttle(redis, PHONE),
        categories=["marketing", "order_updates", "reminders", "account_alerts"],
        default_optout_threshold=0.02,
    )
    with processes(commands, env) as started:
        senders = started[1:]
        await asyncio.sleep(3)
        for process in started:
            if process.poll() is not None:
                print(f"a process exited at start: {process.args}", file=sys.stderr)
                return 2
        created = await service.create(
            {
                "name": "bench",
                "template": {"name": "reconsent_v2", "language": "en_US"},
                "audience": {"categories": ["marketing"], "older_than_days": 365},
                "policy_version": "2",
                "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                "rate": args.rate,
            }
        )
        campaign_id = created.campaign.id
        assert campaign_id is not None
        timeline = Timeline(started=time.monotonic(), load_at_start=os.getloadavg())
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in started}
        await service.act(campaign_id, "start")
        stats_url = f"http://127.0.0.1:{port}/stats"
        limit = timeline.started + args.timeout
        stats: dict[str, Any] = {}
        last_print = 0.0
        while time.monotonic() < limit:
            await asyncio.sleep(0.5)
            stats = await asyncio.to_thread(get_json, stats_url)
            backlog = int(await redis.xlen(OUTBOUND_STREAM))
            timeline.peak_backlog = max(timeline.peak_backlog, backlog)
            for process in senders:
                peak = proc_status(process.pid).get("VmHWM", 0)
                timeline.peak_rss_kb[process.pid] = max(
                    timeline.peak_rss_kb.get(process.pid, 0), peak
                )
            if timeline.all_queued is None:
                counts = await service.repository.counts(campaign_id)
                if (
                    counts.states.get("pending", 0) == 0
                    and counts.total == args.recipients
                    and not counts.states.get("claimed")
                ):
                    timeline.all_queued = time.monotonic()
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                print(
                    f"  {time.monotonic() - timeline.started:6.1f}s: "
                    f"{stats['received']:,} arrived, outbound backlog {backlog}",
                    flush=True,
                )
            if stats["received"] >= args.recipients:
                break
        cpu = {p.pid: cpu_seconds(p.pid) - cpu_before[p.pid] for p in started}
        for process in senders:
            peak = proc_status(process.pid).get("VmHWM", 0)
            timeline.peak_rss_kb[process.pid] = max(timeline.peak_rss_kb.get(process.pid, 0), peak)
    return report(args, stats, timeline, cpu, [p.pid for p in started])


def report(
    args: argparse.Namespace,
    stats: dict[str, Any],
    timeline: Timeline,
    cpu: dict[int, float],
    pids: list[int],
) -> int:
    received = int(stats.get("received", 0))
    span = float(stats.get("last", 0)) - float(stats.get("first", 0))
    achieved = received / span if span > 0 else 0.0
    ratio = achieved / args.rate
    peak_mb = max(timeline.peak_rss_kb.values(), default=0) / 1024
    wall = time.monotonic() - timeline.started
    print(
        f"recipients:     {args.recipients:,} (messages arrived: {received:,}, "
        f"distinct: {stats.get('recipients', 0):,})"
    )
    print(f"campaign rate:  {args.rate:g}/s with {args.senders} sender process(es)")
    print(
        f"achieved rate:  {achieved:,.0f}/s over {span:.1f}s "
        f"(busiest second {stats.get('busiest_second', 0)})"
    )
    print(f"ratio to goal:  {ratio:.3f} (goal >= {GOAL_RATIO})")
    print(f"peak RSS:       {peak_mb:.0f} MB per sender process (goal < {GOAL_RSS_MB:.0f} MB)")
    sender_cpu = sum(cpu.get(pid, 0.0) for pid in pids[1:])
    if received:
        print(f"sender CPU:     {sender_cpu * 1000 / received:.2f} ms per message")
    print(
        "load average:   "
        + " ".join(f"{value:.2f}" for value in timeline.load_at_start)
        + " at the start, "
        + " ".join(f"{value:.2f}" for value in os.getloadavg())
        + f" at the end ({os.cpu_count()} cores)"
    )
    ok = received >= args.recipients and ratio >= GOAL_RATIO and peak_mb < GOAL_RSS_MB
    if not ok:
        print("where the time went:")
        if timeline.all_queued is not None:
            queued = timeline.all_queued - timeline.started
            print(
                f"  dispatcher: every recipient queued after {queued:.1f}s "
                f"({args.recipients / queued:,.0f}/s)"
            )
        else:
            print("  dispatcher: not every recipient was queued before the time limit")
        print(
            f"  outbound queue: peak backlog {timeline.peak_backlog:,} "
            "(the sender fell behind if large)"
        )
        names = ["graph server"] + [f"sender {i + 1}" for i in range(len(pids) - 1)]
        for name, pid in zip(names, pids, strict=True):
            print(f"  {name}: {cpu.get(pid, 0.0):.1f} CPU seconds in {wall:.1f}s of wall time")
        print(f"  machine: {os.cpu_count()} cores shared with PostgreSQL and Redis")
    print("RESULT:", "goal met" if ok else "goal missed")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--senders", type=int, default=1)
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds (default: 3x the ideal + 60)"
    )
    args = parser.parse_args()
    if args.timeout is None:
        args.timeout = args.recipients / args.rate * 3 + 60
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
