"""Keeps the embedded Redis (`REDIS_URL=memory://`) across restarts, in a file of the data folder.

The embedded store holds what the service has acknowledged but not yet done: queued inbound
events and outbound messages, the flows' timers, the 24-hour windows and the de-duplication keys.
Without this module they would end with the process. With it, every key a command changes is
appended to one file (Redis's own DUMP payload, with the key's expiry time), like Redis's
append-only file:

- before every acknowledgement: the web app does not answer a write request (a webhook's 200, an
  API 202) until a save that began after that request's writes is on disk (`persisted`).
  Requests arriving together share one save (group commit);
- at least every `interval` seconds, for what the loops change by themselves (timers firing,
  messages sent): a crash loses at most that much of the loops' progress, which they redo;
- once more when the service stops. The file is read back when it starts.

Which keys changed is learnt from the store's keyspace notifications (`__keyspace@0__:*`), with
stream keys copied at every save as well, because reading a stream in a consumer group changes its
pending entries without a notification. Why this rather than the SQLite file: the embedded store
must keep every command, Lua script and stream semantic of Redis the code relies on (fakeredis
gives those), and DUMP/RESTORE carry any value type, consumer groups and pending entries
included, without a second implementation of each structure. A save holds the event loop while
it copies the changed keys (about 55 µs a key), so that it is one consistent moment; this mode is
for one process on one machine, and a Redis server is the answer beyond that.

File format (ours, versioned): `OPTINRDB1`, then records: key length (4 bytes), key, expiry time
in ms since the epoch (8 bytes, signed: -1 none, -2 the key was deleted), payload length (4
bytes), payload. Records are appended and flushed to disk; later records win. When the file has
grown past four times the live data (and 1 MiB), it is rewritten whole to a temporary file and
renamed over the old one, so a crash at any moment leaves a file that reads back; a torn last
record (a crash while appending) is ignored. The payloads are fakeredis's DUMP format: protect
the file as you protect the SQLite database beside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"OPTINRDB1"
DEFAULT_INTERVAL_SECONDS = 1.0
NO_EXPIRY = -1
DELETED = -2
_LENGTH = struct.Struct(">I")
_EXPIRY = struct.Struct(">q")
_KEYSPACE = "__keyspace@*__:*"
_STREAM_EVENT = b"x"  # XADD, XTRIM, XDEL, XGROUP …: the key holds a stream


class SnapshotError(RuntimeError):
    """The snapshot file cannot be read (damaged, or not ours)."""


Record = tuple[bytes, int, bytes]  # key, expiry in ms since the epoch (or -1, -2), payload


def encode(records: list[Record]) -> bytes:
    parts = []
    for key, expires_at_ms, payload in records:
        parts += [_LENGTH.pack(len(key)), key, _EXPIRY.pack(expires_at_ms)]
        parts += [_LENGTH.pack(len(payload)), payload]
    return b"".join(parts)


def decode(data: bytes) -> dict[bytes, tuple[int, bytes]]:
    """The live keys of a file: later records win, deletions remove, a torn tail is ignored."""
    if not data.startswith(MAGIC):
        raise SnapshotError("not an optin-bot Redis snapshot")
    keys: dict[bytes, tuple[int, bytes]] = {}
    offset = len(MAGIC)
    while offset < len(data):
        try:
            (key_length,) = _LENGTH.unpack_from(data, offset)
            key_end = offset + _LENGTH.size + key_length
            (expires_at_ms,) = _EXPIRY.unpack_from(data, key_end)
            (payload_length,) = _LENGTH.unpack_from(data, key_end + _EXPIRY.size)
        except struct.error:
            break  # torn while appending: the acknowledgement waiting on it was never given
        payload_start = key_end + _EXPIRY.size + _LENGTH.size
        if payload_start + payload_length > len(data):
            break
        key = data[offset + _LENGTH.size : key_end]
        if expires_at_ms == DELETED:
            keys.pop(key, None)
        else:
            keys[key] = (expires_at_ms, data[payload_start : payload_start + payload_length])
        offset = payload_start + payload_length
    return keys


class RedisSnapshot:
    """Saves and restores one embedded Redis server (`server`: a `fakeredis.FakeServer`)."""

    def __init__(
        self, server: Any, path: Path, *, interval: float = DEFAULT_INTERVAL_SECONDS
    ) -> None:
        import fakeredis

        # A synchronous client on the same in-process server: a save runs without yielding to
        # the event loop, so no coroutine changes a key between two keys being read.
        self._client = fakeredis.FakeRedis(server=server)
        self._changes = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
        self._changes.psubscribe(_KEYSPACE)
        self._drain()
        self._streams: set[bytes] = set()
        self._stream_marks: dict[bytes, tuple[Any, ...]] = {}
        self.path = path
        self.interval = interval
        self._next: asyncio.Future[None] | None = None
        self._wanted = asyncio.Event()
        self._closed = False
        self._file_bytes = 0
        self._live_bytes = 0
        self.saves = 0

    def _drain(self) -> set[bytes]:
        """The keys changed since the last call (from the keyspace notifications)."""
        changed = set()
        while (message := self._changes.get_message(timeout=0)) is not None:
            key = bytes(message["channel"]).split(b":", 1)[1]
            changed.add(key)
            if bytes(message["data"]).startswith(_STREAM_EVENT):
                self._streams.add(key)
        return changed

    def _moved_streams(self) -> set[bytes]:
        """Streams whose consumer groups moved since the last save: reading in a group and
        acknowledging change a stream without a keyspace notification, so each stream's length,
        last id and groups' positions and pending counts are compared instead."""
        moved = set()
        for key in list(self._streams):
            try:
                info = self._client.xinfo_stream(key)
                groups = self._client.xinfo_groups(key)
            except Exception:  # gone (deleted or expired): the notification covers it
                self._streams.discard(key)
                moved.add(key)
                continue
            mark = (
                info.get("length"),
                str(info.get("last-generated-id")),
                tuple(
                    sorted(
                        (str(g.get("name")), g.get("pending"), str(g.get("last-delivered-id")))
                        for g in groups
                    )
                ),
            )
            if self._stream_marks.get(key) != mark:
                self._stream_marks[key] = mark
                moved.add(key)
        return moved

    def restore(self) -> int:
        """Load the file, if any, into the (empty) store, then rewrite it compactly; returns the
        number of keys restored. Keys whose time ran out while the service was stopped stay out."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = MAGIC
        keys = decode(data)
        now_ms = int(time.time() * 1000)
        pipe = self._client.pipeline(transaction=False)
        restored = 0
        for key, (expires_at_ms, payload) in keys.items():
            ttl_ms = 0  # RESTORE's "no expiry"
            if expires_at_ms >= 0:
                ttl_ms = expires_at_ms - now_ms
                if ttl_ms <= 0:
                    continue
            pipe.restore(key, ttl_ms, payload, replace=True)
            restored += 1
        pipe.execute()
        self._drain()
        self._streams = {
            key
            for key in self._client.keys("*")
            if isinstance(key, bytes) and self._client.type(key) == b"stream"
        }
        self._rewrite()
        return restored

    def _records(self, keys: set[bytes]) -> list[Record]:
        ordered = sorted(keys)
        pipe = self._client.pipeline(transaction=False)
        for key in ordered:
            pipe.pttl(key)
            pipe.dump(key)
        replies = pipe.execute()
        now_ms = int(time.time() * 1000)
        records: list[Record] = []
        for index, key in enumerate(ordered):
            ttl_ms, payload = replies[2 * index], replies[2 * index + 1]
            if payload is None or ttl_ms == -2:
                records.append((key, DELETED, b""))
                self._streams.discard(key)
            else:
                expires = now_ms + int(ttl_ms) if ttl_ms >= 0 else NO_EXPIRY
                records.append((key, expires, payload))
        return records

    def _rewrite(self) -> None:
        """The whole keyspace to a new file, renamed over the old one."""
        keys = {key for key in self._client.keys("*") if isinstance(key, bytes)}
        data = MAGIC + encode(self._records(keys))
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        self._file_bytes = self._live_bytes = len(data)

    def _append(self, data: bytes) -> None:
        with open(self.path, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        self._file_bytes += len(data)

    async def save(self) -> None:
        """Append what changed since the last save (and every stream) to the file."""
        changed = self._drain() | self._moved_streams()
        if not changed:
            return
        started = time.perf_counter()
        data = encode(self._records(changed))
        log.debug(
            "save: %d keys (%d streams), %d bytes, copied in %.1f ms",
            len(changed),
            len(self._streams),
            len(data),
            (time.perf_counter() - started) * 1000,
        )
        if self._file_bytes > 4 * max(self._live_bytes, 1 << 20):
            self._rewrite()
        else:
            await asyncio.to_thread(self._append, data)
        self.saves += 1

    async def persisted(self) -> None:
        """Wait until a save that began after this call is on disk (raises if it failed)."""
        if self._closed:  # the loop has ended (shutting down): save here and now
            await self.save()
            return
        if self._next is None or self._next.done():
            self._next = asyncio.get_running_loop().create_future()
        waiting = self._next
        self._wanted.set()
        await asyncio.shield(waiting)

    async def run(self, stop: asyncio.Event) -> None:
        """Save when asked (`persisted`) or every `interval` seconds, and once at the end."""
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            wanted = asyncio.ensure_future(self._wanted.wait())
            await asyncio.wait(
                {wanted, stopping}, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED
            )
            wanted.cancel()
            await self._save_for_waiters()
        self._closed = True
        await self._save_for_waiters()
        self._changes.close()

    async def _save_for_waiters(self) -> None:
        self._wanted.clear()
        waiting, self._next = self._next, None
        try:
            await self.save()
        except Exception as exc:
            log.error("could not save the embedded Redis to %s: %r", self.path, exc)
            if waiting is not None and not waiting.done():
                waiting.set_exception(exc)
            return
        if waiting is not None and not waiting.done():
            waiting.set_result(None)
