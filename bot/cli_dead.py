"""`optin-bot dead list | dead replay ID | dead replay --all`: dead inbound events.

The same functions as `GET /v1/dead` and `POST /v1/dead/…/replay` (`bot.dead_events`), straight
on Redis, so it works with no server running; the workers (`worker` or `serve`) apply what is
replayed. With REDIS_URL=memory:// the store lives inside the `serve` process: use the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

from bot.dead_events import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    DeadPage,
    Replayed,
    is_dead_id,
    list_dead,
    replay,
    replay_all,
)
from bot.redisconn import connect_redis
from bot.settings import Settings


def add_dead_parser(sub: Any) -> None:
    """Register `dead` and its actions on the `optin-bot` subparsers."""
    dead = sub.add_parser("dead", help="inbound events the workers gave up on")
    actions = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the dead events, newest first")
    listing.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"at most this many, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})",
    )
    listing.add_argument("--cursor", help="the next cursor a previous page printed")
    listing.add_argument("--json", action="store_true", help="print JSON instead of lines")
    again = actions.add_parser(
        "replay", help="put a dead event (or --all) back on the inbound queue"
    )
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("dead_id", nargs="?", help="the dead id `dead list` shows")
    which.add_argument("--all", action="store_true", help="every dead event, oldest first")


def run_dead(
    settings: Settings,
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Carry out `optin-bot dead …`; the exit status (2: bad input or unknown id, 1: a dead
    entry that holds no readable event). Output goes to the streams current at the call."""
    return asyncio.run(_run(settings, args, out or sys.stdout, err or sys.stderr))


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.dead_command == "list":
        if not 1 <= args.limit <= MAX_LIMIT:
            print(f"optin-bot: --limit is 1 to {MAX_LIMIT}", file=err)
            return 2
        if args.cursor is not None and not is_dead_id(args.cursor):
            print(f"optin-bot: not a cursor: {args.cursor}", file=err)
            return 2
    elif args.dead_id is not None and not is_dead_id(args.dead_id):
        print(f"optin-bot: no dead event {args.dead_id}", file=err)
        return 2
    redis = connect_redis(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        pool_timeout=settings.redis_pool_timeout,
    )
    try:
        if args.dead_command == "list":
            page = await list_dead(redis, limit=args.limit, cursor=args.cursor)
            _print_page(page, args.json, out)
            return 0
        if args.all:
            results = await replay_all(redis)
            for result in results:
                print(f"{result.dead_id} {result.outcome.value} {result.event_id or ''}", file=out)
            replayed = sum(r.outcome is Replayed.REPLAYED for r in results)
            print(f"replayed {replayed} of {len(results)} dead event(s)", file=out)
            return 0
        result = await replay(redis, args.dead_id)
    finally:
        await redis.aclose()
    if result.outcome is Replayed.UNKNOWN:
        print(
            f"optin-bot: no dead event {args.dead_id} (already replayed, trimmed or erased?)",
            file=err,
        )
        return 2
    if result.outcome is Replayed.UNDECODABLE:
        print(f"optin-bot: dead event {args.dead_id} holds no readable event", file=err)
        return 1
    print(f"replayed {result.dead_id}: event {result.event_id}", file=out)
    return 0


def _print_page(page: DeadPage, as_json: bool, out: TextIO) -> None:
    if as_json:
        body = {
            "dead": [e.to_json() for e in page.events],
            "next_cursor": page.next_cursor,
            "total": page.total,
        }
        print(json.dumps(body, indent=2), file=out)
        return
    for event in page.events:
        contact = event.contact_wa_id or event.contact_user_id or "-"
        print(
            f"{event.dead_id}  {event.died_at.isoformat(timespec='seconds')}  {event.reason}  "
            f"attempts={event.attempts}  event={event.event_id or '-'}  contact={contact}  "
            f"{event.error[:200]}",
            file=out,
        )
    print(f"{len(page.events)} of {page.total} dead event(s)", file=out)
    if page.next_cursor:
        print(f"next: --cursor {page.next_cursor}", file=out)
