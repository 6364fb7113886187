"""`optin-bot campaign create|start|pause|resume|status|list`: campaigns from the command line.

The command talks to the database (and Redis, for the pace) directly through the same
`CampaignService` as the API, so it works with no server running; sending is still done by the
`sender` role (or `serve`). `status` draws a live progress bar with rich until the campaign
completes or pauses (Ctrl-C leaves it running); `--once` prints one snapshot.

`create`, `start` and `resume` check the template's way out like the API (the account's template
list, read from Meta with `WHATSAPP_BUSINESS_ACCOUNT_ID`): a refusal is printed with its code and
exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from bot.campaigns.repository import CampaignRepository, TransitionError
from bot.campaigns.service import CampaignService
from bot.campaigns.spec import DEFAULT_RATE, SpecError, identifiers_from_csv
from bot.campaigns.throttle import Throttle
from bot.db.engine import create_engine, session_factory
from bot.db.ledger_keys import attach_keys
from bot.ledger_key import ledger_keys
from bot.message_templates import TemplateRefused, TemplatesUnavailable, template_guard
from bot.redisconn import connect_redis
from bot.services import StartupError, load_language
from bot.settings import Settings

_ORDER = ("queued", "sent", "delivered", "read", "failed", "skipped")
_OUTCOMES = ("reconfirmed", "declined", "opted_out", "lapsed")


def add_campaign_parser(sub: Any) -> None:
    """Register `campaign` and its actions on the `optin-bot` subparsers."""
    campaign = sub.add_parser("campaign", help="re-consent campaigns")
    actions = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a draft campaign (start it to send)")
    create.add_argument("--name")
    create.add_argument("--template", required=True, help="the approved template's name")
    create.add_argument("--language", required=True, help="its language, e.g. en_US")
    create.add_argument(
        "--buttons",
        help="quick-reply payloads in button order (default reconsent:yes,reconsent:no)",
    )
    create.add_argument(
        "--body-parameter",
        action="append",
        default=[],
        help="a body variable, in order; {business_name} is replaced (repeatable)",
    )
    create.add_argument("--categories", required=True, help="comma-separated categories")
    create.add_argument("--older-than-days", type=int, help="consent older than this")
    create.add_argument("--policy-below", help="consent given under a policy below this")
    create.add_argument("--csv", type=Path, help="only the contacts this CSV file lists")
    create.add_argument("--policy-version", required=True, help="the version to reconfirm")
    create.add_argument("--deadline", required=True, help="ISO 8601 with a time zone")
    create.add_argument("--on-deadline", choices=("lapse", "keep"), default="lapse")
    create.add_argument("--rate", type=float, default=DEFAULT_RATE, help="messages per second")
    create.add_argument("--daily-cap", type=int, help="unique contacts per UTC day")
    create.add_argument("--optout-threshold", type=float, help="pause above this opt-out rate")
    for name, text in (
        ("start", "start sending a draft campaign"),
        ("pause", "pause a running campaign"),
        ("resume", "resume a paused campaign"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", type=int)
        if name == "pause":
            action.add_argument("--reason")
    status = actions.add_parser("status", help="progress and counts (live)")
    status.add_argument("id", type=int)
    status.add_argument("--once", action="store_true", help="one snapshot, then exit")
    status.add_argument("--json", action="store_true", help="the API's JSON, then exit")
    status.add_argument("--interval", type=float, default=1.0, help="refresh, in seconds")
    actions.add_parser("list", help="the most recent campaigns")


def run_campaign(settings: Settings, args: argparse.Namespace) -> int:
    """Carry out `optin-bot campaign …`; the exit status."""
    try:
        return asyncio.run(_run(settings, args))
    except KeyboardInterrupt:
        return 130


@contextlib.asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[CampaignService]:
    language = load_language(settings)
    engine = create_engine(settings.database_url)
    attach_keys(engine, ledger_keys(settings))
    redis = connect_redis(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        pool_timeout=settings.redis_pool_timeout,
    )
    # Only needed to read Meta's template list (a token and WHATSAPP_BUSINESS_ACCOUNT_ID).
    http = None if settings.sandbox else aiohttp.ClientSession(raise_for_status=False)
    try:
        yield CampaignService(
            CampaignRepository(session_factory(engine)),
            Throttle(redis, settings.phone_number_id),
            categories=[c.name for c in language.categories],
            default_optout_threshold=settings.quality_guard_optout_rate,
            templates=template_guard(settings, redis, language.catalogs, language.matcher, http),
            template_languages=dict(settings.template_languages),
        )
    finally:
        if http is not None:
            await http.close()
        await redis.aclose()
        await engine.dispose()


def _create_body(args: argparse.Namespace) -> dict[str, Any]:
    template: dict[str, Any] = {"name": args.template, "language": args.language}
    if args.buttons:
        template["buttons"] = [b.strip() for b in args.buttons.split(",") if b.strip()]
    if args.body_parameter:
        template["body_parameters"] = list(args.body_parameter)
    audience: dict[str, Any] = {
        "categories": [c.strip() for c in args.categories.split(",") if c.strip()]
    }
    if args.older_than_days is not None:
        audience["older_than_days"] = args.older_than_days
    if args.policy_below:
        audience["policy_below"] = args.policy_below
    if args.csv is not None:
        audience["contacts"] = identifiers_from_csv(args.csv.read_text(encoding="utf-8-sig"))
    body: dict[str, Any] = {
        "template": template,
        "audience": audience,
        "policy_version": args.policy_version,
        "deadline": args.deadline,
        "on_deadline": args.on_deadline,
        "rate": args.rate,
    }
    for key in ("name", "daily_cap", "optout_threshold"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    return body


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    console = Console()
    errors = Console(stderr=True)
    try:
        async with _service(settings) as service:
            command = args.campaign_command
            if command == "create":
                try:
                    created = await service.create(_create_body(args))
                except TemplateRefused as exc:
                    errors.print(f"optin-bot: campaign refused ({exc.code}): {exc}")
                    return 2
                except (SpecError, ValueError, OSError, TemplatesUnavailable) as exc:
                    errors.print(f"optin-bot: campaign refused: {exc}")
                    return 2
                campaign = created.campaign
                console.print(
                    f"campaign {campaign.id} created (draft): {campaign.name}; "
                    f"start it with `optin-bot campaign start {campaign.id}`"
                )
                if campaign.from_list:
                    console.print(
                        f"{created.listed} listed contacts are recipients; "
                        f"{len(created.unknown)} unknown"
                    )
                return 0
            if command in ("start", "pause", "resume"):
                try:
                    campaign = await service.act(
                        args.id, command, reason=getattr(args, "reason", None)
                    )
                except LookupError:
                    errors.print(f"optin-bot: no campaign {args.id}")
                    return 2
                except TransitionError as exc:
                    errors.print(f"optin-bot: {exc}")
                    return 1
                except TemplateRefused as exc:
                    errors.print(f"optin-bot: campaign refused ({exc.code}): {exc}")
                    return 2
                except TemplatesUnavailable as exc:
                    errors.print(f"optin-bot: campaign refused: {exc}")
                    return 2
                console.print(f"campaign {campaign.id} is {campaign.status}")
                return 0
            if command == "list":
                console.print(_list_table(await service.summaries()))
                return 0
            return await _status(service, args, console, errors)
    except StartupError as exc:
        errors.print(f"optin-bot: {exc}")
        return 2


async def _status(
    service: CampaignService, args: argparse.Namespace, console: Console, errors: Console
) -> int:
    report = await service.report(args.id)
    if report is None:
        errors.print(f"optin-bot: no campaign {args.id}")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    if args.once:
        console.print(render(report))
        return 0
    with Live(render(report), console=console, refresh_per_second=4) as live:
        while report["status"] == "running":
            await asyncio.sleep(args.interval)
            fresh = await service.report(args.id)
            if fresh is None:
                break
            report = fresh
            live.update(render(report))
    return 0


def render(report: dict[str, Any]) -> Group:
    """A campaign's progress bar, its counts and why it is paused, as rich renderables."""
    counts = report["counts"]
    progress = Progress(
        TextColumn(f"[bold]campaign {report['id']}[/] {report['phase']}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
    )
    total = report["progress"]["total"]
    progress.add_task("dispatch", total=total or None, completed=report["progress"]["done"])
    table = Table(show_header=True, header_style="bold")
    for name in ("recipients", *_ORDER, *_OUTCOMES):
        table.add_column(name.replace("_", " "), justify="right")
    table.add_row(*(str(counts[name]) for name in ("recipients", *_ORDER, *_OUTCOMES)))
    lines: list[Any] = [progress, table]
    rate = report["rate"]
    pace = f"pace {rate['effective']:g}/s of {rate['configured']:g}/s"
    if rate["slowed_by_130429"]:
        pace += " (slowed after 130429)"
    guard = report["guard"]
    pace += (
        f"; opt-out rate {guard['optout_rate']:.1%} of {guard['delivered']} delivered "
        f"(pauses above {guard['threshold']:.1%})"
    )
    if report["daily_cap"]:
        pace += f"; daily cap {report['daily_cap']}"
    lines.append(pace)
    if report["failures"]:
        lines.append(
            "failures by Meta code: "
            + ", ".join(f"{code}: {n}" for code, n in report["failures"].items())
        )
    if report["capped_until"] and report["phase"] == "capped":
        lines.append(f"daily cap reached; continues at {report['capped_until']}")
    if report["status"] == "paused":
        lines.append(f"[bold red]paused by {report['paused_by']}:[/] {report['pause_reason']}")
    return Group(*lines)


def _list_table(summaries: list[dict[str, Any]]) -> Table:
    table = Table("id", "name", "phase", "template", "policy", "deadline", header_style="bold")
    for item in summaries:
        table.add_row(
            str(item["id"]),
            item["name"],
            item["phase"],
            f"{item['template']['name']} ({item['template']['language']})",
            item["policy_version"],
            item["deadline"],
        )
    return table
