"""Bad input at volume: generated and mutated Meta bodies, signed, through POST /webhook.

The bodies start from real envelopes (the valid ones of `tests/bot/test_normaliser_properties.py`
and every webhook example in Meta's OpenAPI description, when it is there) and are mutated as
JSON (fields dropped or replaced by values of the wrong type, wrapped in lists, unicode that
UTF-8 cannot carry, huge strings, deep nesting) and as bytes (truncated, flipped, invalid UTF-8,
numbers longer than Python will read). Whatever arrives, the webhook must answer 200, 400 or 413,
never 500, and write all or nothing: a refused body leaves the inbound streams as they were, and
every event of an accepted one is on a stream exactly once, also after Meta sends it again.

Only the web role runs, so no worker consumes what the webhook wrote and the streams can be read
back as they were left. `FUZZ_EXAMPLES` raises the number of generated bodies per test.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import create_app
from bot.appkeys import SERVICES
from bot.eventcodec import decode_event
from bot.normaliser import NotAnEnvelope, normalise
from bot.roles import Role
from bot.streams import INBOUND_SHARDS, inbound_stream
from bot.webhook import MAX_BODY_BYTES
from tests.bot.test_normaliser_meta_examples import load_spec as load_meta_spec
from tests.bot.test_normaliser_meta_examples import request_body_examples
from tests.bot.test_normaliser_properties import VALID_ENVELOPES, json_values
from tests.bot.test_normaliser_properties import _mutate as mutate_json
from tests.fakes.webhooks import dumps, signed, text_webhook

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
ANSWERS = {200, 400, 413}


def _seeds() -> list[dict[str, Any]]:
    spec = load_meta_spec()
    meta = list(request_body_examples(spec).values()) if spec is not None else []
    return [*VALID_ENVELOPES, *meta, text_webhook(wa_id="15550001111", wamid="wamid.SEED")]


SEEDS = _seeds()

#: Text that is awkward for every layer: lone surrogates (JSON can carry them, UTF-8 cannot),
#: NUL, bidi overrides, zero-width joiners, combining marks, and keywords hidden among them.
AWKWARD_TEXT = [
    "\ud800",
    "\udfff STOP",
    "\x00",
    "STOP\x00",
    "\u202eSTOP",
    "S\u200bT\u200bO\u200bP",
    "\N{WAVING WHITE FLAG}\ufe0f\u200d\N{RAINBOW}",
    "e\u0301" * 50,
    "\uffff\ufffe",
    "\U0001d412\U0001d413\U0001d40e\U0001d40f",  # STOP in mathematical bold
]


def _nested(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


@st.composite
def json_mutations(draw: st.DrawFn) -> bytes:
    """A real envelope with 1-5 mutations of its JSON, serialised the way Meta would."""
    payload = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    data = draw(st.data())
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["tree", "tree", "awkward", "huge", "wrong type"]))
        if kind == "tree":
            payload = mutate_json(data, payload)
            continue
        paths = _leaf_paths(payload)
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        if kind == "awkward":
            parent[path[-1]] = draw(st.sampled_from(AWKWARD_TEXT) | st.text(max_size=30))
        elif kind == "huge":
            parent[path[-1]] = "x" * draw(st.sampled_from([10_000, 200_000, MAX_BODY_BYTES]))
        else:
            parent[path[-1]] = draw(json_values)
    return json.dumps(payload, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for key, item in node.items() for p in _leaf_paths(item, (*path, key))]
    if isinstance(node, list):
        return [p for n, item in enumerate(node) for p in _leaf_paths(item, (*path, n))]
    return [path] if path else []


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """A real envelope's bytes, damaged below the level of JSON."""
    body = bytearray(dumps(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        if kind == "truncate":
            del body[at:]
        elif kind == "flip" and at < len(body):
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            body[at:at] = draw(
                st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"[", b'"', b"}"])
                | st.binary(min_size=1, max_size=8)
            )
        elif at < len(body):
            del body[at : at + draw(st.integers(1, 16))]
    return bytes(body)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """Valid JSON syntax that Python's reader refuses, or that only just fits its limits."""
    head = b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":'
    depth = draw(st.sampled_from([10, 500, 900, 1_100, 5_000, 100_000]))
    kind = draw(st.sampled_from(["deep entry", "deep value", "long number", "big float"]))
    if kind == "deep entry":
        return b'{"object":"whatsapp_business_account","entry":' + _nested(depth, b"[", b"]") + b"}"
    if kind == "deep value":
        inner = _nested(depth, b'{"a":', b"}").replace(b'{"a":}', b'{"a":1}')
        return head + b'"messages","value":{"messages":[' + inner + b"]}}]}]}"
    if kind == "long number":
        digits = b"7" * draw(st.sampled_from([18, 19, 4_300, 4_301, 50_000]))
        return head + b'"messages","value":{"messages":[{"from":' + digits + b',"id":"w"}]}}]}]}'
    number = draw(st.sampled_from([b"1e999", b"-1e999", b"NaN", b"Infinity", b"1e-999"]))
    message = b'{"from":"1","id":"w.f","type":"location","location":{"latitude":' + number
    return head + b'"messages","value":{"messages":[' + message + b',"longitude":1}}]}}]}]}'


bodies = json_mutations() | byte_mutations() | hostile_bodies()


@dataclass
class Streams:
    """What the webhook has written so far, read back from the inbound streams."""

    last_ids: dict[str, str] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)

    async def new_entries(self, client: TestClient[Any, Any]) -> list[str]:
        """Event ids of the entries added since the last call, in stream order per shard."""
        redis = client.server.app[SERVICES].redis
        found: list[str] = []
        for shard in range(INBOUND_SHARDS):
            stream = inbound_stream(shard)
            last = self.last_ids.get(stream, "-")
            start = "-" if last == "-" else f"({last}"
            for entry_id, fields in await redis.xrange(stream, min=start, max="+"):
                self.last_ids[stream] = entry_id if isinstance(entry_id, str) else entry_id.decode()
                found.append(decode_event(fields.get("e") or fields[b"e"]).event_id)
        return found


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> TestClient[Any, Any]:
    database_url, redis_url = stack_urls
    app = create_app(settings_for(database_url=database_url, redis_url=redis_url), roles=[Role.WEB])
    return await aiohttp_client(app)


@pytest.fixture
def streams() -> Streams:
    """What this test's app has written; hypothesis runs every example against the same app."""
    return Streams()


def expected_event_ids(body: bytes) -> set[str] | None:
    """The ids of the events in `body`, or None when the body is not an envelope."""
    try:
        return {event.event_id for event in normalise(json.loads(body.decode("utf-8")))}
    except (ValueError, RecursionError, NotAnEnvelope):
        return None


async def post_and_check(client: TestClient[Any, Any], streams: Streams, body: bytes) -> int:
    """Post one signed body and check the all-or-nothing contract; returns the status."""
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status in ANSWERS, await response.text()
    answer = await response.json()
    added = await streams.new_entries(client)
    if response.status != 200:
        assert "error" in answer
        assert added == [], "a refused body left entries on the inbound streams"
        assert len(body) > MAX_BODY_BYTES or expected_event_ids(body) is None
        return response.status
    expected = expected_event_ids(body)
    assert expected is not None, "accepted a body the normaliser refuses"
    assert len(added) == len(set(added)) == answer["events"], "an event was queued twice"
    assert set(added) <= expected
    assert not set(added) & streams.event_ids, "an event was queued again"
    streams.event_ids |= set(added)
    assert expected <= streams.event_ids, "an accepted event is not on any stream"
    return 200


@FUZZ
@given(body=bodies)
async def test_fuzzed_bodies_get_200_or_400_and_write_all_or_nothing(
    client: TestClient[Any, Any], streams: Streams, body: bytes
) -> None:
    if await post_and_check(client, streams, body) == 200:
        # Meta's retry of the same body: acknowledged, nothing queued a second time
        again = await client.post("/webhook", data=body, headers=signed(body))
        assert again.status == 200
        assert (await again.json())["events"] == 0
        assert await streams.new_entries(client) == []


@FUZZ
@given(batch=st.lists(bodies, min_size=2, max_size=12))
async def test_bad_bodies_do_not_spoil_good_ones_sent_at_the_same_moment(
    client: TestClient[Any, Any], streams: Streams, batch: list[bytes]
) -> None:
    """Concurrent requests share one Redis call (`InboundQueue` batches them): a hostile body
    among them must not fail, or leak into, the others."""
    n = len(batch)
    good = [dumps(text_webhook(wa_id=f"1555{n:03d}{i:04d}")) for i in range(n)]
    sent = [body for pair in zip(batch, good, strict=True) for body in pair]
    responses = await asyncio.gather(
        *(client.post("/webhook", data=body, headers=signed(body)) for body in sent)
    )
    statuses = [r.status for r in responses]
    assert set(statuses) <= ANSWERS
    assert statuses[1::2] == [200] * n, "a good body failed beside a bad one"
    answers = [await r.json() for r in responses]
    added = await streams.new_entries(client)
    assert len(added) == len(set(added)) == sum(a.get("events", 0) for a in answers)
    wanted: set[str] = set()
    for body, status in zip(sent, statuses, strict=True):
        if status == 200:
            wanted |= expected_event_ids(body) or set()
    assert set(added) <= wanted
    streams.event_ids |= set(added)
    assert wanted <= streams.event_ids
