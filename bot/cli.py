"""The `optin-bot` command: serve | migrate | web | worker | sender | health | ledger | contact |
dead."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from aiohttp import web

from bot.app import create_app
from bot.appkeys import LOOPS
from bot.cli_campaign import add_campaign_parser, run_campaign
from bot.cli_dead import add_dead_parser, run_dead
from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, session_factory
from bot.db.ledger import LedgerRepository
from bot.db.ledger_keys import attach_keys
from bot.db.migrate import migrate
from bot.db.pseudonyms import Pseudonymiser
from bot.erasure import run_erase_command
from bot.heartbeats import TaskHealth, read_health
from bot.ledger_key import ledger_keys
from bot.multiprocess import ChildSpec, run_workers
from bot.redisconn import connect_redis
from bot.roles import ALL_ROLES, Role, supervise_loops
from bot.services import StartupError, check_startup, describe_mode, open_services
from bot.settings import Settings, SettingsError, load_settings
from flows.machine import TABLE
from flows.mermaid import to_mermaid

log = logging.getLogger("optin-bot")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad option is named in one line, exit 2, no usage dump
    (the usage is one `--help` away and buries the line that matters in a log)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="optin-bot",
        description="WhatsApp consent bot. Configuration comes from the environment and .env.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"one of {', '.join(LOG_LEVELS)} (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def http_command(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, default=8080)
        cmd.add_argument(
            "--insecure-no-signature",
            action="store_true",
            help="accept unsigned webhooks although a token is set (never in production)",
        )
        return cmd

    serve = http_command("serve", "everything in one process: webhook, API, workers, sender")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N processes of the whole service on one port (SO_REUSEPORT); needs a "
        "shared Redis and PostgreSQL (default 1)",
    )
    http_command(
        "web", "the HTTP role only (webhook, business API, console, health, metrics); scale-out"
    )
    sub.add_parser("migrate", help="create or upgrade the database schema")
    sub.add_parser(
        "health",
        help="every task's heartbeat in every process (web, worker, sender); exit 1 if one is "
        "dead or stalled",
    )
    add_campaign_parser(sub)
    add_dead_parser(sub)
    flows = sub.add_parser("flows", help="show the conversation flows")
    flows.add_argument("--mermaid", action="store_true", help="print a Mermaid state diagram")
    ledger = sub.add_parser("ledger", help="consent ledger tools")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    verify = ledger_sub.add_parser("verify", help="check every hash chain; exit 1 if broken")
    verify.add_argument("--contact", help="only this contact (wa_id or BSUID)")
    contact = sub.add_parser("contact", help="contact tools")
    contact_sub = contact.add_subparsers(dest="contact_command", required=True, metavar="ACTION")
    erase = contact_sub.add_parser(
        "erase", help="erase a contact's personal data, keeping its opt-out (docs/erasure.md)"
    )
    erase.add_argument("contact", help="the contact's wa_id or BSUID")
    for name, text in (
        ("worker", "inbound flows (scale-out)"),
        ("sender", "outbound queue (scale-out)"),
    ):
        role = sub.add_parser(name, help=text)
        role.add_argument("--insecure-no-signature", action="store_true", help=argparse.SUPPRESS)
    return parser


def check_shareable(settings: Settings) -> None:
    """`serve --workers N` needs state that several processes can share."""
    embedded = [
        name
        for name, is_embedded in (
            ("REDIS_URL=memory://", settings.embedded_redis),
            ("the SQLite DATABASE_URL", settings.embedded_database),
        )
        if is_embedded
    ]
    if embedded:
        raise StartupError(
            f"--workers > 1 needs a Redis server and PostgreSQL shared by the processes; "
            f"{' and '.join(embedded)} live inside one process (run `serve` without --workers)"
        )


def _serve(settings: Settings, args: argparse.Namespace, roles: frozenset[Role]) -> int:
    """Serve until stopped; 1 when a loop was given up on (`bot.supervisor`), else 0."""
    app = create_app(
        settings,
        roles=roles,
        auto_migrate=roles == ALL_ROLES,
        on_give_up=lambda: signal.raise_signal(signal.SIGTERM),
    )
    url = f"http://{args.host}:{args.port}"

    def announce(_: str) -> None:
        log.info("listening on %s (webhook: %s/webhook, health: %s/healthz)", url, url, url)
        if settings.sandbox:
            log.info("sandbox: open %s/sandbox to chat with the bot", url)

    async def stopping(_: web.Application) -> None:
        loops = sorted(role.value for role in roles - {Role.WEB})
        log.info(
            "stop signal: closing the listener, finishing requests in flight%s",
            f", then draining the {', '.join(loops)} tasks (up to 10 s each)" if loops else "",
        )

    async def stopped(_: web.Application) -> None:
        log.info("stopped cleanly")

    app.on_shutdown.append(stopping)
    app.on_cleanup.append(stopped)
    web.run_app(app, host=args.host, port=args.port, print=announce, access_log=None)
    return 1 if LOOPS in app and app[LOOPS].failed else 0


async def _run_loops(settings: Settings, roles: frozenset[Role]) -> int:
    """Run the loops of `roles` until a stop signal (0) or until one is given up on (1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_services(settings, auto_migrate=False) as services:
        loops = supervise_loops(services, roles, stop)
        tasks = loops.tasks
        log.info("%s running as consumer %s", "/".join(r.value for r in roles), services.consumer)
        await stop.wait()
        log.info(
            "stop signal: draining %d task(s) (%s), up to 15 s each; unacknowledged events stay "
            "in their stream for the next consumer",
            len(tasks),
            ", ".join(task.get_name() for task in tasks),
        )
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=15)
    if loops.failed:
        log.critical("stopped because a task was given up on; exit status 1")
        return 1
    log.info("stopped cleanly")
    return 0


def _health_line(verdict: TaskHealth) -> str:
    beat = verdict.beat
    facts = ""
    if beat is not None:
        lag = "-" if beat.lag is None else str(beat.lag)
        facts = (
            f" role={beat.role} pid={beat.pid} handled={beat.handled} lag={lag} "
            f"restarts={beat.restarts}"
        )
    detail = f" ({verdict.detail})" if verdict.detail else ""
    return f"{verdict.state:8} {verdict.task:22} {verdict.consumer}{facts}{detail}"


async def _health(settings: Settings) -> int:
    """Print each task's state from the heartbeats in Redis; 0 when all are healthy."""
    if settings.embedded_redis:
        # The in-process store lives inside the running `serve`: another process cannot read it.
        print(
            "REDIS_URL is the in-process store of a running `optin-bot serve`, which this "
            "command cannot reach: ask that process's GET /healthz instead",
            file=sys.stderr,
        )
        return 2
    redis = connect_redis(settings.redis_url, client_name=settings.redis_client_name)
    try:
        verdicts = await read_health(redis, stall_seconds=settings.health_stall_seconds)
    finally:
        await redis.aclose()
    for verdict in verdicts:
        print(_health_line(verdict))
    if not verdicts:
        print("no task has written a heartbeat (is any worker, sender or serve running?)")
        return 1
    failing = [v for v in verdicts if not v.healthy]
    print(f"health: {'ok' if not failing else f'{len(failing)} task(s) failing'}")
    return 0 if not failing else 1


def _flows(args: argparse.Namespace) -> int:
    if args.mermaid:
        print(to_mermaid(), end="")
        return 0
    for (state, trigger), alternatives in TABLE.items():
        for transition in alternatives:
            if transition.effects or transition.target not in (None, state):
                target = (transition.target or state).value
                guard = f" [{transition.guard.value}]" if transition.guard else ""
                print(f"{state.value:24} {trigger.value:24}{guard} -> {target}: {transition.label}")
    return 0


async def _verify_ledger(settings: Settings, identifier: str | None) -> int:
    engine = create_engine(settings.database_url)
    attach_keys(engine, ledger_keys(settings, create=False))
    try:
        sessions = session_factory(engine)
        contact_id = None
        if identifier is not None:
            contacts = ContactRepository(
                sessions, pseudonyms=Pseudonymiser(settings.pseudonym_secret)
            )
            contact = await contacts.find(identifier)
            if contact is None:
                print(f"optin-bot: no contact {identifier}", file=sys.stderr)
                return 2
            contact_id = contact.id
        report = await LedgerRepository(sessions).verify(contact_id)
    finally:
        await engine.dispose()
    for problem in report.problems:
        row = f"row {problem.row_id}" if problem.row_id is not None else "no row left"
        print(
            f"BROKEN {row}, chain {problem.chain} (contact {problem.contact_id}) at seq "
            f"{problem.seq}: {problem.kind}: {problem.detail}"
        )
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    notes = [f"{report.states_checked} consent states checked"]
    if report.rows_erased:
        notes.append(f"{report.rows_erased} with erased evidence")
    if report.rows_unkeyed:
        notes.append(f"{report.rows_unkeyed} unkeyed, written before the ledger key")
    if report.key_ids:
        notes.append("keys " + ", ".join(report.key_ids))
    print(
        f"ledger: {report.chains_checked} chains, {report.rows_checked} events checked: "
        f"{verdict} ({'; '.join(notes)})"
    )
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        if args.command == "campaign":
            return run_campaign(settings, args)
        if args.command == "dead":
            return run_dead(settings, args)
        if args.command == "flows":
            return _flows(args)
        if args.command == "ledger":
            return asyncio.run(_verify_ledger(settings, args.contact))
        if args.command == "contact":
            return asyncio.run(run_erase_command(settings, args.contact))
        if args.command == "health":
            return asyncio.run(_health(settings))
        if args.command == "migrate":
            asyncio.run(migrate(settings.database_url))
            log.info("database schema is up to date (%s)", settings.database_url.split("@")[-1])
            return 0
        roles = {
            "serve": ALL_ROLES,
            "web": frozenset({Role.WEB}),
            "worker": frozenset({Role.WORKER}),
            "sender": frozenset({Role.SENDER}),
        }[args.command]
        workers = getattr(args, "workers", 1)
        if workers < 1:
            print(f"optin-bot: --workers must be at least 1, not {workers}", file=sys.stderr)
            return 2
        check_startup(
            settings,
            insecure_no_signature=args.insecure_no_signature,
            multi_process=args.command != "serve",
        )
        if workers > 1:
            check_shareable(settings)
        for line in describe_mode(settings):
            log.info(line)
        if workers > 1:
            spec = ChildSpec(args.host, args.port, args.log_level, args.insecure_no_signature)
            return run_workers(spec, workers)
        if Role.WEB in roles:
            return _serve(settings, args, roles)
        return asyncio.run(_run_loops(settings, roles))
    except SettingsError as exc:
        print(f"optin-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"optin-bot: cannot start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
