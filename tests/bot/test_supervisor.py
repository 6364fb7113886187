"""The supervisor of a role's tasks: backoff, which errors are temporary, restart counting and
giving up.

Bug pinned: `bot.roles.start_loops` started bare tasks, so one `DBAPIError` escaping the sender
(a connection killed by `pg_terminate_backend` while `mark_outbound_many` recorded a batch)
ended it for good ("CRITICAL bot.roles: sender stopped: DBAPIError"): the outbound queue stayed
stuck until a restart. A supervised task now restarts by itself.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.supervisor import Backoff, Failure, RestartBudget, Supervisor, classify

FAST = Backoff(base=0.001, cap=0.004)


class _AdminShutdown(Exception):
    sqlstate = "57P01"


def _terminated() -> DBAPIError:
    """What SQLAlchemy raises when `pg_terminate_backend` killed the connection."""
    return DBAPIError("UPDATE transcript", {}, _AdminShutdown("terminating connection"))


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    backoff = Backoff(base=0.1, cap=5.0)
    assert backoff.delay(0, rng=lambda: 1.0) == pytest.approx(0.1)
    assert backoff.delay(0, rng=lambda: 0.0) == pytest.approx(0.05)
    assert backoff.delay(3, rng=lambda: 1.0) == pytest.approx(0.8)
    assert backoff.delay(10, rng=lambda: 1.0) == pytest.approx(5.0)
    assert backoff.delay(10_000, rng=lambda: 0.5) == pytest.approx(3.75)
    delays = {backoff.delay(4) for _ in range(50)}
    assert len(delays) > 1  # jittered
    assert all(0.8 <= d <= 1.6 for d in delays)


def test_ground_failures_are_temporary_and_work_failures_permanent() -> None:
    assert classify(_terminated()) is Failure.TEMPORARY
    assert classify(RedisConnectionError("Connection closed by server.")) is Failure.TEMPORARY
    assert classify(ConnectionResetError()) is Failure.TEMPORARY
    assert classify(asyncpg.exceptions.ConnectionDoesNotExistError("gone")) is Failure.TEMPORARY
    wrapped = RuntimeError("recording failed")
    wrapped.__cause__ = _terminated()
    assert classify(wrapped) is Failure.TEMPORARY
    assert classify(ValueError("bad event")) is Failure.PERMANENT
    assert classify(IntegrityError("INSERT", {}, Exception("duplicate key"))) is Failure.PERMANENT


def test_the_budget_allows_limit_failures_within_the_window() -> None:
    budget = RestartBudget(limit=2, window=10.0)
    assert budget.spend(0.0)
    assert budget.spend(1.0)
    assert not budget.spend(2.0)
    # Failures older than the window no longer count.
    budget = RestartBudget(limit=2, window=10.0)
    assert budget.spend(0.0)
    assert budget.spend(1.0)
    assert budget.spend(20.0)


async def test_a_task_killed_by_a_database_error_restarts_and_carries_on() -> None:
    """The defect: a `DBAPIError` from a terminated backend ended the sender for good."""
    restarts: list[str] = []
    gave_up: list[str] = []
    supervisor = Supervisor(
        on_restart=restarts.append,
        on_give_up=lambda task, _: gave_up.append(task),
        backoff=FAST,
    )
    stop = asyncio.Event()
    runs = 0

    async def sender() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise _terminated()
        await stop.wait()

    task = supervisor.start("sender", sender, stop)
    for _ in range(200):
        if runs == 4:
            break
        await asyncio.sleep(0.01)
    assert runs == 4
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 1)
    assert restarts == ["sender"] * 3
    assert gave_up == []
    assert supervisor.states["sender"].restarts == 3
    assert supervisor.failed is None


async def test_temporary_failures_never_exhaust_the_budget() -> None:
    restarts: list[str] = []
    supervisor = Supervisor(
        on_restart=restarts.append,
        on_give_up=lambda task, exc: pytest.fail(f"gave up on {task}: {exc!r}"),
        backoff=FAST,
        budget=lambda: RestartBudget(limit=1, window=60.0),
    )
    stop = asyncio.Event()

    async def flaky() -> None:
        if len(restarts) >= 20:
            stop.set()
            return
        raise RedisConnectionError("Connection closed by server.")

    await asyncio.wait_for(supervisor.run("inbound-worker", flaky, stop), 5)
    assert len(restarts) == 20


async def test_a_task_failing_permanently_too_often_is_given_up() -> None:
    """Not waiting forever: past its budget the supervisor gives up and the process stops."""
    restarts: list[str] = []
    gave_up: list[tuple[str, BaseException]] = []
    stop = asyncio.Event()

    def give_up(task: str, exc: BaseException) -> None:
        gave_up.append((task, exc))
        stop.set()

    supervisor = Supervisor(
        on_restart=restarts.append,
        on_give_up=give_up,
        backoff=FAST,
        budget=lambda: RestartBudget(limit=3, window=60.0),
    )

    async def broken() -> None:
        raise ValueError("schema mismatch")

    await asyncio.wait_for(supervisor.run("crm-deliverer", broken, stop), 5)
    assert restarts == ["crm-deliverer"] * 3
    assert [(task, str(exc)) for task, exc in gave_up] == [("crm-deliverer", "schema mismatch")]
    assert supervisor.failed is not None and supervisor.failed[0] == "crm-deliverer"
    assert supervisor.states["crm-deliverer"].abandoned


async def test_a_loop_that_returns_while_the_role_runs_is_started_again() -> None:
    restarts: list[str] = []
    supervisor = Supervisor(on_restart=restarts.append, on_give_up=lambda *_: None, backoff=FAST)
    stop = asyncio.Event()
    runs = 0

    async def quits_early() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            stop.set()

    await asyncio.wait_for(supervisor.run("timer-poller", quits_early, stop), 5)
    assert runs == 3
    assert restarts == ["timer-poller"] * 2
