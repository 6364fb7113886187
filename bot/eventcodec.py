"""Events to and from text, for the Redis Streams between the webhook and the workers.

The webhook answers Meta only once its events are stream entries, and a worker may read them
back much later (or after a restart, or in another process), so the encoding must be exact:
`decode_event(encode_event(e)) == e` for every event, and an entry written before a field with a
default was added still decodes (queues outlive deployments). The format is compact JSON with a
`"type"` tag (the event's class name) and one key per dataclass field; times are ISO 8601 with
their UTC offset, tuples are lists. Text is written with ASCII escapes, so any string Meta sent
(even a lone surrogate) survives the trip through UTF-8 bytes.

How each field is written is read off the event classes' type hints once, at import; a field of
a type this module does not know fails the import rather than a round trip at run time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any, get_type_hints

from flows.events import EVENT_CLASSES, BaseEvent, ContactRef, Event, MetaError

__all__ = ["EventDecodeError", "decode_event", "encode_event"]


class EventDecodeError(ValueError):
    """The text is not an encoded event (corrupt entry, or written by an incompatible version)."""


Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


def encode_event(event: Event) -> str:
    """Compact JSON for `event`, tagged with its class name under `"type"`."""
    spec = _SPECS.get(type(event).__name__)
    if spec is None or spec.cls is not type(event):
        raise TypeError(f"not an event: {type(event).__name__}")
    data: dict[str, Any] = {"type": spec.cls.__name__}
    for name, encode, _ in spec.fields:
        data[name] = encode(getattr(event, name))
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def decode_event(text: str | bytes) -> Event:
    """The event `encode_event` wrote; `EventDecodeError` for anything else."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise EventDecodeError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EventDecodeError("not a JSON object")
    tag = data.get("type")
    spec = _SPECS.get(tag) if isinstance(tag, str) else None
    if spec is None:
        raise EventDecodeError(f"unknown event type {tag!r}")
    values: dict[str, Any] = {}
    for name, _, decode in spec.fields:
        if name not in data:
            if name in spec.defaulted:
                continue  # written before the field existed: the class's default stands
            raise EventDecodeError(f"{spec.cls.__name__} without {name!r}")
        try:
            values[name] = decode(data[name])
        except (TypeError, ValueError) as exc:
            raise EventDecodeError(f"{spec.cls.__name__}.{name}: {exc}") from exc
    try:
        event: Event = spec.cls(**values)  # type: ignore[assignment]
    except (TypeError, ValueError) as exc:
        raise EventDecodeError(f"{spec.cls.__name__}: {exc}") from exc
    return event


# ------------------------------------------------------------------------ field converters


def _same(value: Any) -> Any:
    return value


def _expect(kind: type | tuple[type, ...], what: str) -> Decoder:
    def decode(value: Any) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise TypeError(f"expected {what}, got {type(value).__name__}")
        return value

    return decode


def _optional(decode: Decoder) -> Decoder:
    def decode_optional(value: Any) -> Any:
        return None if value is None else decode(value)

    return decode_optional


def _optional_encoder(encode: Encoder) -> Encoder:
    def encode_optional(value: Any) -> Any:
        return None if value is None else encode(value)

    return encode_optional


def _decode_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _encode_datetime(value: datetime) -> str:
    if value.utcoffset() is None:
        raise ValueError("naive datetime in an event")
    return value.isoformat()


def _decode_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("expected an ISO 8601 string")
    moment = datetime.fromisoformat(value)
    if moment.utcoffset() is None:
        raise ValueError("time without a UTC offset")
    return moment


def _encode_contact(contact: ContactRef) -> list[str | None]:
    return [
        contact.wa_id,
        contact.user_id,
        contact.parent_user_id,
        contact.username,
        contact.profile_name,
    ]


def _decode_contact(value: Any) -> ContactRef:
    if not isinstance(value, list) or len(value) != 5:
        raise TypeError("expected a contact (list of 5)")
    if not all(part is None or isinstance(part, str) for part in value):
        raise TypeError("contact parts must be strings or null")
    return ContactRef(*value)


def _encode_errors(errors: tuple[MetaError, ...]) -> list[list[Any]]:
    return [[error.code, error.title, error.message, error.details] for error in errors]


def _decode_errors(value: Any) -> tuple[MetaError, ...]:
    if not isinstance(value, list):
        raise TypeError("expected a list of errors")
    errors: list[MetaError] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 4):
            raise TypeError("expected an error (list of 4)")
        code, title, message, details = item
        _expect(int, "an error code")(code)
        _expect(str, "an error title")(title)
        _optional(_expect(str, "an error message"))(message)
        _optional(_expect(str, "error details"))(details)
        errors.append(MetaError(code, title, message, details))
    return tuple(errors)


def _decode_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


_CONVERTERS: dict[object, tuple[Encoder, Decoder]] = {
    str: (_same, _expect(str, "a string")),
    str | None: (_same, _optional(_expect(str, "a string"))),
    int: (_same, _expect(int, "an integer")),
    float: (_same, _decode_float),
    bool: (_same, _expect(bool, "a boolean")),
    datetime: (_encode_datetime, _decode_datetime),
    datetime | None: (_optional_encoder(_encode_datetime), _optional(_decode_datetime)),
    ContactRef: (_encode_contact, _decode_contact),
    ContactRef | None: (_optional_encoder(_encode_contact), _optional(_decode_contact)),
    tuple[MetaError, ...]: (_encode_errors, _decode_errors),
    tuple[str, ...]: (list, _decode_names),
}


class _Spec:
    """How one event class is written: its fields in order, each with its converters."""

    __slots__ = ("cls", "defaulted", "fields")

    def __init__(self, cls: type[BaseEvent]) -> None:
        hints = get_type_hints(cls)
        self.cls = cls
        self.fields: list[tuple[str, Encoder, Decoder]] = []
        # Fields with a default may be missing from an entry an older version wrote: a field
        # added to an event must come with a default, so entries queued before an upgrade decode.
        self.defaulted = frozenset(
            f.name
            for f in fields(cls)
            if f.default is not MISSING or f.default_factory is not MISSING
        )
        for field in fields(cls):
            converters = _CONVERTERS.get(hints[field.name])
            if converters is None:
                raise TypeError(f"{cls.__name__}.{field.name}: no codec for {hints[field.name]}")
            self.fields.append((field.name, *converters))


_SPECS: dict[str, _Spec] = {cls.__name__: _Spec(cls) for cls in EVENT_CLASSES}
