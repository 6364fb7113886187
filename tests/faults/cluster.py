"""Running optin-bot as real processes against one Redis and one PostgreSQL, for the fault tests.

`processes` starts roles (`web`, `worker`, `sender`, `serve`) each logging to a file, `logs_of`
reads those files back for an assertion message, `live_env` is the environment of a live-mode
process talking to a fake Graph server, and `wait_up` waits for every web port's `/healthz`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from sqlalchemy import text

from bot.db.engine import create_engine, session_factory
from bot.db.ledger import LedgerRepository
from bot.db.ledger_keys import attach_keys
from bot.ledger_key import ledger_keys
from bot.settings import load_settings
from tests.fakes.webhooks import eventually

PHONE_NUMBER_ID = "106540352242922"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The key the processes sign the ledger with; verification needs it too.
LEDGER_KEY = "fault-test-ledger-key-0123456789abcdef"


def live_env(database_url: str, redis_url: str, graph_url: str, secret: str) -> dict[str, str]:
    """A live-mode process (token set) whose Cloud API is `graph_url`, sending fast."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WHATSAPP_")},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WHATSAPP_ACCESS_TOKEN": "token",
        "WHATSAPP_APP_SECRET": secret,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "GRAPH_API_URL": graph_url,
        "SEND_RATE": "1000",
        "PSEUDONYM_KEY": "fault-test-pseudonym-key",
        "LEDGER_KEY": LEDGER_KEY,
        "BUSINESS_NAME": "Acme",
    }


async def start(
    env: dict[str, str], cwd: Path, command: Sequence[str], *, log_name: str
) -> asyncio.subprocess.Process:
    """One `python -m bot <command>` appending its stderr to `cwd/<log_name>.log`."""
    with (cwd / f"{log_name}.log").open("a") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--log-level",
            "WARNING",
            *command,
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def stop(procs: Sequence[asyncio.subprocess.Process], grace: float = 20) -> None:
    """SIGTERM every process still running, then wait; SIGKILL what does not end in time."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def processes(
    env: dict[str, str], cwd: Path, *commands: list[str]
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start the roles, each logging to a file in `cwd` (read back when one dies)."""
    procs = [
        await start(env, cwd, command, log_name=f"{n}-{command[0]}")
        for n, command in enumerate(commands)
    ]
    try:
        yield procs
    finally:
        await stop(procs)


def logs_of(cwd: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(cwd.glob("*.log")))


async def wait_up(
    session: aiohttp.ClientSession,
    ports: Sequence[int],
    procs: Sequence[asyncio.subprocess.Process],
    cwd: Path,
    within: float = 60,
) -> None:
    """Every port answers `/healthz` with 200; fails with the logs if a process died first."""

    async def up() -> bool:
        assert all(p.returncode is None for p in procs), logs_of(cwd)
        try:
            for port in ports:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status != 200:
                        return False
            return True
        except aiohttp.ClientError:
            return False

    await eventually(up, within=within, interval=0.3)


async def count(database_url: str, sql: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def ledger_chains_verified(database_url: str) -> int:
    """Verify every hash chain; returns how many were checked (asserts none is broken)."""
    engine = create_engine(database_url)
    settings = load_settings(
        {"DATABASE_URL": database_url, "LEDGER_KEY": LEDGER_KEY}, env_file=None
    )
    attach_keys(engine, ledger_keys(settings, create=False))
    try:
        report = await LedgerRepository(session_factory(engine)).verify()
    finally:
        await engine.dispose()
    assert report.ok, report.problems[:5]
    return report.chains_checked
