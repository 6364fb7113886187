"""The `optin-bot` command as an operator runs it: real processes, real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, session_factory
from bot.db.ledger import ConsentChange, LedgerRepository
from bot.db.ledger_keys import attach_keys
from bot.db.migrate import migrate
from bot.db.transcript import TranscriptRepository
from bot.ledger_key import ledger_keys
from bot.settings import load_settings
from flows.consent import ConsentAction, Method, Source
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook

BASE_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("WHATSAPP_", "GRAPH_", "DATABASE_", "REDIS_", "API_TOKEN", "LEDGER_"))
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**BASE_ENV, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def process(*args: str, env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        env={**BASE_ENV, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def wait_healthy(
    session: aiohttp.ClientSession, port: int, proc: subprocess.Popen[str]
) -> dict[str, Any]:
    async def healthy() -> dict[str, Any] | None:
        assert proc.poll() is None, f"server exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                return dict(await response.json()) if response.status == 200 else None
        except aiohttp.ClientError:
            return None

    result: dict[str, Any] = await eventually(healthy, within=30, interval=0.2)
    return result


async def recorded_texts(database_url: str, wa_id: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        contact = await ContactRepository(sessions).find(wa_id)
        if contact is None or contact.id is None:
            return []
        rows = await TranscriptRepository(sessions).list_for_contact(contact.id)
        return [r.text or "" for r in rows if r.direction == "inbound"]
    finally:
        await engine.dispose()


def output_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.read()


async def test_serve_with_a_token_accepts_a_signed_webhook_and_records_it(tmp_path: Path) -> None:
    port = free_port()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"
    async with FakeGraph() as graph:
        env = {
            "WHATSAPP_ACCESS_TOKEN": "token",
            "WHATSAPP_APP_SECRET": "s3cret",
            "PSEUDONYM_KEY": "a-test-pseudonym-key-0123456789",
            "LEDGER_KEY": "a-test-ledger-key-0123456789abcdef",
            "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
            "GRAPH_API_URL": graph.base_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": "memory://",
        }
        with process("serve", "--port", str(port), env=env, cwd=tmp_path) as proc:
            async with http() as session:
                health = await wait_healthy(session, port, proc)
                assert health["mode"] == "live"
                body = dumps(text_webhook(wa_id="15559990001", text="Hello there"))
                async with session.post(
                    f"http://127.0.0.1:{port}/webhook", data=body, headers=signed(body, "s3cret")
                ) as response:
                    assert response.status == 200
                async with session.post(
                    f"http://127.0.0.1:{port}/webhook", data=body, headers=signed(body, "wrong")
                ) as response:
                    assert response.status == 403

                async def recorded() -> list[str]:
                    return await recorded_texts(database_url, "15559990001")

                assert await eventually(recorded) == ["Hello there"]
        out = output_of(proc)
    assert "live mode: sending as number 106540352242922" in out
    assert "SANDBOX" not in out
    assert "WHATSAPP_BUSINESS_ACCOUNT_ID unset: templates are sent without checking" in out


async def test_serve_with_no_configuration_is_a_sandbox_on_embedded_defaults(
    tmp_path: Path,
) -> None:
    port = free_port()
    with process("serve", "--port", str(port), env={}, cwd=tmp_path) as proc:
        async with http() as session:
            health = await wait_healthy(session, port, proc)
    out = output_of(proc)
    assert health["mode"] == "sandbox"
    assert health["redis"]["embedded"] and health["database"]["embedded"]
    first_lines = out.splitlines()[:6]
    assert any("SANDBOX MODE" in line for line in first_lines), out
    assert any("embedded SQLite" in line for line in first_lines), out
    assert (tmp_path / "optin.db").exists(), "serve migrates an empty embedded database itself"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"WHATSAPP_ACCESS_TOKEN": "t"}, "WHATSAPP_APP_SECRET"),
        ({"API_TOKEN": "an-api-token-0123456789"}, "LEDGER_KEY"),
        ({"SEND_RATE": "lots"}, "SEND_RATE"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ],
)
def test_bad_configuration_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("--log-level", "LOUD", "serve"), {}, "--log-level"),
        (("serve", "--port", "eighty"), {}, "--port"),
        (("serve",), {"DEFAULT_LOCALE": "xx"}, "DEFAULT_LOCALE"),
        (("serve",), {"CATEGORIES_FILE": "/nonexistent.toml"}, "CATEGORIES_FILE"),
        (("ledger", "verify"), {"DEFAULT_LOCALE": "x1"}, "DEFAULT_LOCALE"),
    ],
)
def test_every_bad_option_or_setting_is_one_line_exit_2_no_traceback(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    """Regression: `--log-level LOUD` ended in a ValueError traceback, and DEFAULT_LOCALE=xx
    failed after four startup lines as "cannot start" instead of a configuration error."""
    result = run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_keywords_file_is_one_line_naming_the_line_and_why(tmp_path: Path) -> None:
    (tmp_path / "keywords.toml").write_text(
        '# ours\n[en.opt_out]\nremove = ["STOP"]\n', encoding="utf-8"
    )
    result = run_cli("serve", env={"KEYWORDS_FILE": "keywords.toml"}, cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.strip() == (
        "optin-bot: configuration error: KEYWORDS_FILE: keywords.toml:3: en.opt_out.remove: "
        "'STOP' is one of the words US carriers and the FCC treat as opt-outs (STOP, STOPALL, "
        "UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPT OUT); it cannot be removed"
    )


def test_an_unknown_default_locale_is_a_configuration_error_naming_the_choices(
    tmp_path: Path,
) -> None:
    result = run_cli("serve", env={"DEFAULT_LOCALE": "xx"}, cwd=tmp_path)
    assert result.stderr.startswith("optin-bot: configuration error: DEFAULT_LOCALE"), result
    assert "available: " in result.stderr and "es" in result.stderr


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    result = run_cli("--log-level", "debug", "flows", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_web_help_names_the_console_health_and_metrics(tmp_path: Path) -> None:
    """Regression: `optin-bot web --help` omitted the console the web role serves."""
    for args in (("web", "--help"), ("--help",)):
        result = run_cli(*args, env={}, cwd=tmp_path)
        words = " ".join(result.stdout.split())
        for served in ("webhook", "business API", "console", "health", "metrics"):
            assert served in words, result.stdout


async def test_sigterm_logs_what_it_drains_and_exits_0(tmp_path: Path) -> None:
    """Regression: SIGTERM stopped `serve` without a word in the log."""
    port = free_port()
    with process("serve", "--port", str(port), env={}, cwd=tmp_path) as proc:
        async with http() as session:
            await wait_healthy(session, port, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    out = output_of(proc)
    stop_line = next(line for line in out.splitlines() if "stop signal" in line)
    assert "draining" in stop_line and "worker" in stop_line and "sender" in stop_line
    assert "stopped cleanly" in out


async def test_favicon_is_served(tmp_path: Path) -> None:
    """Regression: every page asked for /favicon.ico and got 404."""
    port = free_port()
    with process("serve", "--port", str(port), env={}, cwd=tmp_path) as proc:
        async with http() as session:
            await wait_healthy(session, port, proc)
            async with session.get(f"http://127.0.0.1:{port}/favicon.ico") as response:
                assert response.status == 200
                assert response.content_type == "image/x-icon"
                assert (await response.read())[:4] == b"\x00\x00\x01\x00"


def test_scale_out_roles_refuse_the_in_process_redis(tmp_path: Path) -> None:
    result = run_cli("worker", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "memory://" in result.stderr


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"}
    for _ in range(2):
        result = run_cli("migrate", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.db").exists()


def test_web_refuses_an_unmigrated_postgres_like_database(tmp_path: Path) -> None:
    """`web` never migrates by itself: an empty database is an error that says what to do."""
    port = free_port()
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        "REDIS_URL": "redis://127.0.0.1:6379/14",
    }
    result = run_cli("web", "--port", str(port), env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "optin-bot migrate" in result.stderr + result.stdout


@pytest.mark.services
async def test_web_worker_and_sender_as_separate_processes(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    database_url, redis_url = real_stack_urls
    port = free_port()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "WHATSAPP_APP_SECRET": "s"}
    with (
        process("web", "--port", str(port), env=env, cwd=tmp_path) as web,
        process("worker", env=env, cwd=tmp_path),
        process("worker", env=env, cwd=tmp_path),
        process("sender", env=env, cwd=tmp_path),
    ):
        async with http() as session:
            await wait_healthy(session, port, web)
            for i in range(5):
                body = dumps(text_webhook(wa_id="15559990003", text=f"m{i}"))
                async with session.post(
                    f"http://127.0.0.1:{port}/webhook", data=body, headers=signed(body, "s")
                ) as response:
                    assert response.status == 200

        async def all_recorded() -> list[str]:
            texts = await recorded_texts(database_url, "15559990003")
            return texts if len(texts) == 5 else []

        assert sorted(await eventually(all_recorded, within=30)) == [f"m{i}" for i in range(5)]


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_serve_workers_below_one_is_one_clear_line(tmp_path: Path, workers: str) -> None:
    result = run_cli("serve", "--workers", workers, env={}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers must be at least 1" in lines[0], result.stderr


def test_serve_workers_refuse_the_embedded_stores(tmp_path: Path) -> None:
    """memory:// Redis and SQLite live inside one process: N processes cannot share them."""
    result = run_cli("serve", "--workers", "2", "--port", str(free_port()), env={}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "memory://" in lines[0] and "SQLite" in lines[0], result.stderr


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def answering_pids(port: int, proc: subprocess.Popen[str], expected: int) -> set[int]:
    """Fresh connections until `expected` different processes have answered /healthz."""
    seen: set[int] = set()
    connector = aiohttp.TCPConnector(force_close=True)  # one connection per request
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        await wait_healthy(session, port, proc)

        async def all_seen() -> set[int]:
            for _ in range(20):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        seen.add(int((await response.json())["pid"]))
            return seen if len(seen) >= expected else set()

        return await eventually(all_seen, within=60, interval=0.2)


@pytest.mark.services
async def test_serve_workers_runs_processes_on_one_port_and_sigterm_stops_them_all(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    database_url, redis_url = real_stack_urls
    port = free_port()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "WHATSAPP_APP_SECRET": "s"}
    with process("serve", "--workers", "2", "--port", str(port), env=env, cwd=tmp_path) as proc:
        pids = await answering_pids(port, proc, expected=2)
        assert len(pids) == 2 and proc.pid not in pids
        assert {parent_of(pid) for pid in pids} == {proc.pid}
        body = dumps(text_webhook(wa_id="15559990007", text="via workers"))
        async with (
            http() as session,
            session.post(
                f"http://127.0.0.1:{port}/webhook", data=body, headers=signed(body, "s")
            ) as response,
        ):
            assert response.status == 200

        async def recorded() -> list[str]:
            return await recorded_texts(database_url, "15559990007")

        assert await eventually(recorded, within=30) == ["via workers"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, output_of(proc)
    assert not any(alive(pid) for pid in pids), "every worker process ended with the parent"


def accepted_webhooks(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "optin_webhook_requests_total"
                and sample.labels.get("result") == "accepted"
            ):
                return float(sample.value)
    raise AssertionError("no optin_webhook_requests_total{result=accepted} in /metrics")


@pytest.mark.services
async def test_serve_workers_metrics_sum_every_process(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    """Regression: under `serve --workers N`, /metrics showed whichever process took the
    connection; each scrape must report the whole service's counters."""
    database_url, redis_url = real_stack_urls
    port = free_port()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "WHATSAPP_APP_SECRET": "s"}
    with process("serve", "--workers", "2", "--port", str(port), env=env, cwd=tmp_path) as proc:
        await answering_pids(port, proc, expected=2)
        connector = aiohttp.TCPConnector(force_close=True)  # each request may reach either child
        async with aiohttp.ClientSession(connector=connector) as session:
            answered_by: set[int] = set()
            sent = 0
            while len(answered_by) < 2 or sent < 20:
                assert sent < 400, "one process took every webhook"
                body = dumps(text_webhook(wa_id="15559990011", text=f"m{sent}"))
                async with session.post(
                    f"http://127.0.0.1:{port}/webhook", data=body, headers=signed(body, "s")
                ) as response:
                    assert response.status == 200
                sent += 1
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    answered_by.add(int((await response.json())["pid"]))
            scraped = set()
            for _ in range(10):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    scraped.add(accepted_webhooks(await response.text()))
        assert scraped == {float(sent)}, f"sent {sent}, scrapes said {scraped}"


@pytest.mark.services
@pytest.mark.slow  # a kill test: three server processes, one killed with SIGKILL, about 10 s
async def test_serve_workers_exits_non_zero_when_a_worker_dies(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    """No silent restart loop: the parent stops the others and reports the failure."""
    database_url, redis_url = real_stack_urls
    port = free_port()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "WHATSAPP_APP_SECRET": "s"}
    with process("serve", "--workers", "2", "--port", str(port), env=env, cwd=tmp_path) as proc:
        victim, survivor = sorted(await answering_pids(port, proc, expected=2))
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=40) != 0
        out = output_of(proc)
    assert "ended unexpectedly" in out, out
    assert not alive(survivor)


async def test_ledger_verify_names_the_row_behind_a_flipped_consent_state(tmp_path: Path) -> None:
    """Regression: `consent_states.status = 'opted_in'` after a STOP passed `ledger verify`;
    now it exits 1 naming the ledger row the state claims to come from."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    env = {"DATABASE_URL": database_url, "REDIS_URL": "memory://"}
    settings = load_settings(env, env_file=None)
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        attach_keys(engine, ledger_keys(settings))
        sessions = session_factory(engine)
        contact = await ContactRepository(sessions).resolve(wa_id="15557770001", user_id=None)
        assert contact.id is not None
        stop = ConsentChange(
            category="marketing",
            action=ConsentAction.WITHDRAWN,
            source=Source.WEBSITE,
            method=Method.API_RECORD,
            evidence={"ip": "203.0.113.7"},
            business_name="Acme",
            policy_version=None,
            occurred_at=datetime(2025, 3, 1, tzinfo=UTC),
            event_key="cli-stop",
        )
        (row,) = await LedgerRepository(sessions).apply(contact.id, [stop])
        clean = run_cli("ledger", "verify", env=env, cwd=tmp_path)
        assert clean.returncode == 0, clean
        assert "1 events checked: OK" in clean.stdout and "keys embedded" in clean.stdout
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE consent_states SET status = 'opted_in'"))
    finally:
        await engine.dispose()

    result = run_cli("ledger", "verify", env=env, cwd=tmp_path)

    assert result.returncode == 1, result
    assert f"BROKEN row {row.id}, chain {contact.id}" in result.stdout
    assert "state_mismatch" in result.stdout


#: The checkout under test, for the subprocesses of tests that need its newest commands.
CHECKOUT = str(Path(__file__).resolve().parents[2])


async def test_health_prints_every_task_and_exits_1_when_one_is_failing(
    tmp_path: Path, real_redis_url: str
) -> None:
    """`optin-bot health` reads the heartbeats every role writes (a `worker` or `sender` has no
    HTTP to ask): 1 with none, 0 when every task is ok, 1 naming a stalled one."""
    import asyncio
    import time

    from redis.asyncio import Redis

    from bot import redis_keys
    from bot.heartbeats import Beat

    env = {"REDIS_URL": real_redis_url, "PYTHONPATH": CHECKOUT}

    async def health() -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, "health", env=env, cwd=tmp_path)

    nothing = await health()
    assert nothing.returncode == 1, nothing.stderr
    assert "no task has written a heartbeat" in nothing.stdout

    redis: Redis = Redis.from_url(real_redis_url, decode_responses=True)
    now = time.time()

    async def beat(task: str, *, progress_ago: float, lag: int) -> None:
        record = Beat(task, "host-1", "sender", 42, 7, now - progress_ago, lag, 2, True, now)
        await redis.set(
            redis_keys.HEARTBEAT.format(task=task, consumer="host-1"), record.to_json(), ex=30
        )
        await redis.hset(redis_keys.HEARTBEATS_SEEN.name, f"{task}:host-1", str(now))

    try:
        await beat("sender", progress_ago=1, lag=3)
        healthy = await health()
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert "ok       sender" in healthy.stdout and "restarts=2" in healthy.stdout
        await beat("crm-deliverer", progress_ago=600, lag=9)
        stalled = await health()
        assert stalled.returncode == 1, stalled.stdout
        assert "stalled  crm-deliverer" in stalled.stdout
    finally:
        await redis.aclose()


def test_health_on_the_embedded_defaults_says_it_cannot_see_the_serving_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Found trying the embedded defaults: `optin-bot health` beside a running `serve` said "no
    task has written a heartbeat", because the in-process store is not shared. It now says why
    it cannot tell and exits 2."""
    from bot import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", "memory://")
    assert cli.main(["health"]) == 2
    assert "/healthz" in capsys.readouterr().err
