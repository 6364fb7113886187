"""10,000 idle connections and a few slow-loris clients do not stop the webhook answering.

The real service runs as an `optin-bot web` process on a real socket, started with the usual soft
limit of 1024 open files, so it must raise that limit itself (`bot.app.raise_open_file_limit`)
to hold 10,000 connections. This process opens the idle connections (raising its own limit),
starts clients that send a request's headers one byte at a time, and then posts signed webhooks:
each must be answered 200 promptly, while the idle connections are still held open.

A second test checks, in-process and with a short timeout, that a client that never finishes its
headers is disconnected after `IDLE_CONNECTION_SECONDS`, so such clients cannot pile up forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot import app as app_module
from bot.app import create_app
from bot.roles import Role
from tests.fakes.webhooks import APP_SECRET, dumps, eventually, signed, text_webhook

IDLE = int(os.environ.get("IDLE_CONNECTIONS", "10000"))
SLOW_LORIS = 5
WEBHOOKS = 50
PROMPT_SECONDS = 5.0  # generous: the machine is shared; typical answers take milliseconds
CHILD_SOFT_LIMIT = 1024


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_own_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard open-file limit ({hard}) forbids {needed} sockets in one process")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


def _child_limit() -> None:
    """Runs in the service process before exec: start it with a typical soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (CHILD_SOFT_LIMIT, hard))


@contextlib.asynccontextmanager
async def web_process(
    database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "REDIS_"))},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WHATSAPP_APP_SECRET": APP_SECRET,
    }
    with (tmp_path / "web.log").open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--log-level",
            "WARNING",
            "web",
            "--port",
            str(port),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=_child_limit,
        )
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                assert proc.returncode is None, (tmp_path / "web.log").read_text()[-2000:]
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(up, within=60, interval=0.2)
        yield port, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def open_idle(port: int, count: int) -> list[tuple[asyncio.StreamReader, Any]]:
    """`count` connections that send nothing, opened 200 at a time (the listen backlog is 128)."""
    opened: list[tuple[asyncio.StreamReader, Any]] = []
    while len(opened) < count:
        batch = min(200, count - len(opened))
        try:
            opened += await asyncio.wait_for(
                asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(batch))),
                timeout=60,
            )
        except TimeoutError:
            raise AssertionError(f"the service stopped accepting after {len(opened)}") from None
    return opened


async def slow_loris(port: int, stop: asyncio.Event, sent: list[int]) -> None:
    """Send a request's headers one byte every 50 ms, never finishing them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"".join(b"X-Padding-%d: %s\r\n" % (n, b"a" * 40) for n in range(100))
    )
    try:
        for byte in head:
            if stop.is_set() or reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent[0] += 1
            await asyncio.sleep(0.05)
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.mark.services
@pytest.mark.slow
async def test_webhooks_answer_promptly_beside_idle_and_slow_connections(
    real_stack_urls: tuple[str, str], tmp_path: Path
) -> None:
    raise_own_limit(IDLE + 1000)
    database_url, redis_url = real_stack_urls
    async with web_process(database_url, redis_url, tmp_path) as (port, proc):
        started = time.perf_counter()
        idle = await open_idle(port, IDLE)
        opened_in = time.perf_counter() - started
        stop = asyncio.Event()
        sent = [0]
        lorises = [asyncio.create_task(slow_loris(port, stop, sent)) for _ in range(SLOW_LORIS)]
        latencies: list[float] = []
        try:
            await asyncio.sleep(0.5)
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=2 * PROMPT_SECONDS),
                connector=aiohttp.TCPConnector(limit=1),
            ) as session:
                for n in range(WEBHOOKS):
                    body = dumps(text_webhook(wa_id=f"1777{n:07d}", wamid=f"wamid.IDLE{n}"))
                    began = time.perf_counter()
                    async with session.post(
                        f"http://127.0.0.1:{port}/webhook", data=body, headers=signed(body)
                    ) as response:
                        assert response.status == 200, await response.text()
                        assert (await response.json())["events"] == 1
                    latencies.append(time.perf_counter() - began)
            assert proc.returncode is None
            still_open = sum(not reader.at_eof() for reader, _ in idle)
        finally:
            stop.set()
            for task in lorises:
                task.cancel()
            await asyncio.gather(*lorises, return_exceptions=True)
            for _, writer in idle:
                writer.close()
        print(
            f"\n{IDLE} idle connections opened in {opened_in:.1f}s, {still_open} still open; "
            f"{SLOW_LORIS} slow-loris clients sent {sent[0]} header bytes; {WEBHOOKS} webhooks: "
            f"median {statistics.median(latencies) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms; load average {os.getloadavg()[0]:.2f}"
        )
        assert still_open == IDLE, "the service dropped idle connections it should still hold"
        assert sent[0] > SLOW_LORIS, "the slow-loris clients did not get going"
        assert max(latencies) < PROMPT_SECONDS, latencies


async def test_an_unfinished_request_is_disconnected_after_the_idle_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings_for: Any
) -> None:
    monkeypatch.setattr(app_module, "IDLE_CONNECTION_SECONDS", 0.5)
    app = create_app(
        settings_for(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/optin.db", redis_url="memory://idle"
        ),
        roles=[Role.WEB],
    )
    runner = web.AppRunner(app)  # no keepalive_timeout here: the app must bring its own
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        began = time.perf_counter()
        # The server closes both; reading returns b"" (EOF) instead of waiting forever.
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        assert await asyncio.wait_for(idle_reader.read(), timeout=10) == b""
        assert time.perf_counter() - began < 10
        writer.close()
        idle_writer.close()
    finally:
        await runner.cleanup()


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert app_module.raise_open_file_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if hard != resource.RLIM_INFINITY:
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
