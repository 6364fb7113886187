"""`/v1/campaigns`: create re-consent campaigns, start / pause / resume them, read their numbers.

The dispatcher (sender role) does the sending; this module only writes the campaign's settings
and status, so a request never waits on a campaign. Errors: 422 `invalid_campaign` (the detail
names the field), 404 `unknown_campaign`, 409 `invalid_transition` (the campaign's status does
not allow it, e.g. resuming a running campaign), 422 `template_without_opt_out` /
`unknown_template` (creating, starting or resuming a campaign whose template is MARKETING without
a way out, or not in the account's template list; see `bot.message_templates`), 503
`templates_unavailable` (the template list cannot be read).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.api.errors import api_error
from bot.appkeys import SERVICES
from bot.campaigns.repository import CampaignRepository, TransitionError
from bot.campaigns.service import TRANSITIONS, CampaignService
from bot.campaigns.spec import MAX_RATE, SpecError
from bot.campaigns.throttle import Throttle
from bot.db.engine import session_factory
from bot.message_templates import TemplateRefused, TemplatesUnavailable
from bot.services import Services


def campaign_service(services: Services) -> CampaignService:
    return CampaignService(
        CampaignRepository(session_factory(services.engine)),
        Throttle(services.redis, services.settings.phone_number_id),
        categories=[c.name for c in services.language.categories],
        default_optout_threshold=services.settings.quality_guard_optout_rate,
        templates=services.templates,
        template_languages=dict(services.settings.template_languages),
    )


def _template_problem(exc: TemplateRefused | TemplatesUnavailable) -> web.Response:
    if isinstance(exc, TemplateRefused):
        return api_error(422, exc.code, str(exc))
    return api_error(503, "templates_unavailable", str(exc))


def _campaign_id(request: web.Request) -> int | None:
    text = request.match_info["campaign_id"]
    return int(text) if text.isdigit() and len(text) < 10 else None


async def create(request: web.Request) -> web.Response:
    service = campaign_service(request.app[SERVICES])
    if request.content_type != "application/json":
        return api_error(415, "unsupported_media_type", "send the body as application/json")
    try:
        data: Any = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return api_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
    try:
        created = await service.create(data)
    except SpecError as exc:
        return api_error(422, "invalid_campaign", str(exc))
    except (TemplateRefused, TemplatesUnavailable) as exc:
        return _template_problem(exc)
    assert created.campaign.id is not None
    report = await service.report(created.campaign.id)
    assert report is not None
    report["listed"] = {"recipients": created.listed, "unknown": list(created.unknown[:100])}
    return web.json_response(report, status=201)


async def read(request: web.Request) -> web.Response:
    campaign_id = _campaign_id(request)
    report = None
    if campaign_id is not None:
        report = await campaign_service(request.app[SERVICES]).report(campaign_id)
    if report is None:
        return api_error(
            404, "unknown_campaign", f"no campaign {request.match_info['campaign_id']}"
        )
    return web.json_response(report)


async def list_campaigns(request: web.Request) -> web.Response:
    service = campaign_service(request.app[SERVICES])
    return web.json_response({"campaigns": await service.summaries()})


def _action(action: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        campaign_id = _campaign_id(request)
        if campaign_id is None:
            return api_error(
                404, "unknown_campaign", f"no campaign {request.match_info['campaign_id']}"
            )
        reason: str | None = None
        if action == "pause" and request.can_read_body:
            try:
                body = json.loads(await request.read() or b"{}")
            except (ValueError, UnicodeDecodeError):
                return api_error(400, "invalid_json", "the body is not valid JSON")
            if not isinstance(body, dict) or set(body) - {"reason"}:
                return api_error(422, "invalid_request", "the body may only hold `reason`")
            if body.get("reason") is not None and not isinstance(body["reason"], str):
                return api_error(422, "invalid_request", "`reason` is a string")
            reason = body.get("reason")
        service = campaign_service(request.app[SERVICES])
        try:
            await service.act(campaign_id, action, reason=reason)
        except LookupError:
            return api_error(404, "unknown_campaign", f"no campaign {campaign_id}")
        except TransitionError as exc:
            return api_error(409, "invalid_transition", str(exc))
        except (TemplateRefused, TemplatesUnavailable) as exc:
            return _template_problem(exc)
        report = await service.report(campaign_id)
        return web.json_response(report)

    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/campaigns", create)
    app.router.add_get("/v1/campaigns", list_campaigns)
    app.router.add_get("/v1/campaigns/{campaign_id}", read)
    for action in TRANSITIONS:
        app.router.add_post(f"/v1/campaigns/{{campaign_id}}/{action}", _action(action))


# --------------------------------------------------------------------------- OpenAPI 3.1

_ERROR = {"$ref": "#/components/schemas/Error"}
_CAMPAIGN = {"$ref": "#/components/schemas/Campaign"}
_ID = {
    "name": "campaign_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "the body is not valid JSON (`invalid_json`)",
        413: "the body is over 1 MiB",
        415: "the body is not application/json (`unsupported_media_type`)",
        404: "no such campaign (`unknown_campaign`)",
        409: "the campaign's status does not allow this (`invalid_transition`)",
        422: "the campaign is refused; `detail` names the field (`invalid_campaign`), or its "
        "template is MARKETING without a way out (`template_without_opt_out`) or not in the "
        "account's template list (`unknown_template`)",
        503: "the account's template list cannot be read from Meta (`templates_unavailable`)",
    }
    return {
        str(s): {"description": meaning[s], "content": {"application/json": {"schema": _ERROR}}}
        for s in statuses
    }


def _transition(action: str, summary: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": f"{action}Campaign",
        "tags": ["campaigns"],
        "parameters": [_ID],
        "responses": {
            "200": {
                "description": "the campaign after the change",
                "content": {"application/json": {"schema": _CAMPAIGN}},
            },
            **_errors(404, 409),
        },
    }
    if action in ("start", "resume"):
        operation["responses"].update(_errors(422, 503))
    if action == "pause":
        operation["responses"].update(_errors(400, 413, 415, 422))
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"reason": {"type": "string"}},
                    }
                }
            },
        }
    return {"post": operation}


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/campaigns": {
        "post": {
            "summary": "Create a re-consent campaign (as a draft; start it to send)",
            "operationId": "createCampaign",
            "tags": ["campaigns"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/NewCampaign"}}
                },
            },
            "responses": {
                "201": {
                    "description": "the campaign; `listed` says how many listed contacts became "
                    "recipients and which are unknown",
                    "content": {"application/json": {"schema": _CAMPAIGN}},
                },
                **_errors(400, 413, 415, 422, 503),
            },
        },
        "get": {
            "summary": "The most recent campaigns",
            "operationId": "listCampaigns",
            "tags": ["campaigns"],
            "responses": {
                "200": {
                    "description": "newest first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["campaigns"],
                                "properties": {
                                    "campaigns": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/CampaignSummary"},
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
    },
    "/v1/campaigns/{campaign_id}": {
        "get": {
            "summary": "A campaign's settings, status, counts, pace and quality guard",
            "operationId": "getCampaign",
            "tags": ["campaigns"],
            "parameters": [_ID],
            "responses": {
                "200": {
                    "description": "the campaign",
                    "content": {"application/json": {"schema": _CAMPAIGN}},
                },
                **_errors(404),
            },
        }
    },
    "/v1/campaigns/{campaign_id}/start": _transition("start", "Start sending (draft -> running)"),
    "/v1/campaigns/{campaign_id}/pause": _transition("pause", "Pause (running -> paused)"),
    "/v1/campaigns/{campaign_id}/resume": _transition("resume", "Resume (paused -> running)"),
}

_COUNT = {"type": "integer", "minimum": 0}
_COUNTS = {
    name: _COUNT
    for name in (
        "recipients",
        "pending",
        "skipped",
        "queued",
        "sent",
        "delivered",
        "read",
        "failed",
        "reconfirmed",
        "declined",
        "opted_out",
        "lapsed",
    )
}
_STATUS = {"type": "string", "enum": ["draft", "running", "paused", "completed"]}
_PHASE = {"type": "string", "enum": ["draft", "running", "capped", "paused", "completed"]}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_BUTTONS = {
    "type": "array",
    "items": {"type": "string", "enum": ["reconsent:yes", "reconsent:no"]},
    "minItems": 1,
    "maxItems": 2,
    "uniqueItems": True,
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "NewCampaign": {
        "type": "object",
        "additionalProperties": False,
        "required": ["template", "audience", "policy_version", "deadline"],
        "properties": {
            "name": {"type": "string", "maxLength": 128},
            "template": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "language"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$"},
                    "language": {"type": "string", "examples": ["en_US"]},
                    "buttons": {
                        **_BUTTONS,
                        "description": "quick-reply payloads in button order; default both",
                    },
                    "body_parameters": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 1024},
                        "description": "body variables; {business_name} is replaced",
                    },
                },
            },
            "audience": {
                "type": "object",
                "additionalProperties": False,
                "required": ["categories"],
                "description": "contacts opted in to one of `categories`, consent older than "
                "`older_than_days`, given under a policy below `policy_below`; only the listed "
                "contacts when `contacts` or `csv` is given",
                "properties": {
                    "categories": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "older_than_days": {"type": "integer", "minimum": 0, "maximum": 36500},
                    "policy_below": {"type": "string", "pattern": r"^\d+(\.\d+)*$"},
                    "contacts": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "wa_ids, E.164 numbers or business-scoped user ids",
                    },
                    "csv": {
                        "type": "string",
                        "description": "a CSV file's text: the wa_id/phone/e164/user_id/bsuid "
                        "column, else the first",
                    },
                },
            },
            "policy_version": {"type": "string", "pattern": r"^\d+(\.\d+)*$"},
            "deadline": _TIME,
            "on_deadline": {"type": "string", "enum": ["lapse", "keep"], "default": "lapse"},
            "rate": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_RATE,
                "default": 80,
                "description": "messages per second",
            },
            "daily_cap": {
                "type": "integer",
                "minimum": 1,
                "description": "unique contacts per UTC day (Meta's messaging limit tier)",
            },
            "optout_threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        },
    },
    "CampaignSummary": {
        "type": "object",
        "required": ["id", "name", "status", "phase"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "status": _STATUS,
            "phase": _PHASE,
            "pause_reason": {"type": ["string", "null"]},
            "template": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "language": {"type": "string"}},
            },
            "policy_version": {"type": "string"},
            "deadline": _TIME,
            "created_at": _TIME,
        },
    },
    "Campaign": {
        "type": "object",
        "required": ["id", "status", "phase", "counts", "progress", "guard", "rate"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "status": _STATUS,
            "phase": _PHASE,
            "paused_by": {"type": ["string", "null"], "enum": ["operator", "guard", None]},
            "pause_reason": {"type": ["string", "null"]},
            "template": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "language": {"type": "string"},
                    "buttons": _BUTTONS,
                    "body_parameters": {"type": "array", "items": {"type": "string"}},
                },
            },
            "audience": {"type": "object"},
            "policy_version": {"type": "string"},
            "deadline": _TIME,
            "on_deadline": {"type": "string", "enum": ["lapse", "keep"]},
            "rate": {
                "type": "object",
                "properties": {
                    "configured": {"type": "number"},
                    "effective": {"type": "number"},
                    "slowed_by_130429": {"type": "boolean"},
                },
            },
            "daily_cap": {"type": ["integer", "null"]},
            "capped_until": _NULLABLE_TIME,
            "counts": {
                "type": "object",
                "properties": _COUNTS,
                "description": "sent/delivered/read are cumulative (at least this far)",
            },
            "states": {"type": "object", "additionalProperties": _COUNT},
            "failures": {
                "type": "object",
                "additionalProperties": _COUNT,
                "description": "failed recipients by Meta error code",
            },
            "skipped_reasons": {"type": "object", "additionalProperties": _COUNT},
            "progress": {
                "type": "object",
                "properties": {
                    "done": _COUNT,
                    "total": _COUNT,
                    "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                    "audience_complete": {"type": "boolean"},
                },
            },
            "guard": {
                "type": "object",
                "properties": {
                    "optout_rate": {"type": "number"},
                    "threshold": {"type": "number"},
                    "min_delivered": {"type": "integer"},
                    "delivered": _COUNT,
                    "opted_out": _COUNT,
                },
            },
            "listed": {
                "type": "object",
                "description": "only in the answer to POST /v1/campaigns",
                "properties": {
                    "recipients": _COUNT,
                    "unknown": {"type": "array", "items": {"type": "string"}},
                },
            },
            "created_at": _TIME,
            "started_at": _NULLABLE_TIME,
            "completed_at": _NULLABLE_TIME,
            "updated_at": _TIME,
        },
    },
}
