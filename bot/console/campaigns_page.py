"""The campaigns pages: every campaign with its status, and one campaign's progress, counts per
state, reply and opt-out rates over time, the quality guard's state; pause and resume.

The numbers are the business API's own report (`GET /v1/campaigns/{id}`, through the same
`CampaignService`), so the console and the API never disagree. Pausing and resuming are logged in
the console's audit log with the agent's name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bot.api.campaigns import campaign_service
from bot.appkeys import SERVICES
from bot.campaigns.repository import TransitionError
from bot.console.audit import AuditLog
from bot.console.auth import console_page
from bot.console.campaign_series import campaign_series
from bot.console.charts import Line, line_chart
from bot.console.render import redirect, refusal, render, secure
from bot.console.sessions import AgentSession
from bot.db.engine import session_factory

MAX_REASON: Final = 500
NOTICES: Final = {"paused": "Campaign paused.", "resumed": "Campaign resumed."}


def _campaign_id(request: web.Request) -> int | None:
    text = request.match_info["campaign_id"]
    return int(text) if text.isdigit() and len(text) < 10 else None


def _when(text: str | None) -> str:
    if not text:
        return ""
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@console_page
async def campaigns_page(request: web.Request, session: AgentSession) -> web.StreamResponse:
    summaries = await campaign_service(request.app[SERVICES]).summaries()
    for summary in summaries:
        summary["created"] = _when(summary["created_at"])
        summary["deadline_text"] = _when(summary["deadline"])
    return render(
        request,
        "console/campaigns.html",
        {"section": "campaigns", "campaigns": summaries},
        session=session,
    )


async def _render_campaign(
    request: web.Request,
    session: AgentSession,
    campaign_id: int,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.StreamResponse:
    services = request.app[SERVICES]
    service = campaign_service(services)
    report = await service.report(campaign_id)
    campaign = await service.repository.get(campaign_id)
    if report is None or campaign is None:
        return refusal(request, 404, "No such campaign", f"There is no campaign {campaign_id}.")
    now = datetime.now(UTC)
    series = await campaign_series(session_factory(services.engine), campaign, now)
    guard = report["guard"]
    charts = {
        "replies": line_chart(
            "Replies per message sent, cumulative",
            [Line("reply rate", [(p.at, p.reply_rate) for p in series])],
        ),
        "optouts": line_chart(
            "Opt-outs per message sent, cumulative",
            [Line("opt-out rate", [(p.at, p.optout_rate) for p in series], colour="#cf222e")],
            threshold=float(guard["threshold"]),
            threshold_label="guard threshold (of delivered)",
        ),
    }
    return render(
        request,
        "console/campaign.html",
        {
            "section": "campaigns",
            "report": report,
            "series": series,
            "charts": charts,
            "times": {
                name: _when(report.get(name))
                for name in ("created_at", "started_at", "completed_at", "deadline", "updated_at")
            },
            "guard_tripped": report["status"] == "paused" and report["paused_by"] == "guard",
            "notice": NOTICES.get(request.query.get("done", "")),
            "error": error,
            "when": lambda at: at.strftime("%Y-%m-%d %H:%M"),
        },
        session=session,
        status=status,
    )


@console_page
async def campaign_page(request: web.Request, session: AgentSession) -> web.StreamResponse:
    campaign_id = _campaign_id(request)
    if campaign_id is None:
        return refusal(request, 404, "No such campaign", "That is not a campaign id.")
    return await _render_campaign(request, session, campaign_id)


def _act(action: str) -> Any:
    @console_page
    async def act(request: web.Request, session: AgentSession) -> web.StreamResponse:
        campaign_id = _campaign_id(request)
        if campaign_id is None:
            return refusal(request, 404, "No such campaign", "That is not a campaign id.")
        form = await request.post()
        note = form.get("reason")
        note_text = note.strip()[:MAX_REASON] if isinstance(note, str) else ""
        reason = f"paused by {session.agent}" + (f": {note_text}" if note_text else "")
        services = request.app[SERVICES]
        try:
            await campaign_service(services).act(
                campaign_id, action, reason=reason if action == "pause" else None
            )
        except LookupError:
            return refusal(request, 404, "No such campaign", f"There is no campaign {campaign_id}.")
        except TransitionError as exc:
            return await _render_campaign(request, session, campaign_id, error=str(exc), status=409)
        await AuditLog(services.redis).record(
            agent=session.agent,
            action=f"campaign_{action}",
            detail={"campaign_id": str(campaign_id), "note": note_text},
        )
        done = "paused" if action == "pause" else "resumed"
        return secure(redirect(f"/console/campaigns/{campaign_id}?done={done}"))

    return act


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/campaigns", campaigns_page)
    app.router.add_get("/console/campaigns/{campaign_id}", campaign_page)
    app.router.add_post("/console/campaigns/{campaign_id}/pause", _act("pause"))
    app.router.add_post("/console/campaigns/{campaign_id}/resume", _act("resume"))
