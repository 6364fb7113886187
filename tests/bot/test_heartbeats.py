"""Task heartbeats and the health verdict drawn from them.

Bug pinned: with the sender stopped for good, `/healthz` still answered 200 "ok": it only
pinged Redis and the database. A task's heartbeat now tells a dead or stalled task apart.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bot import redis_keys
from bot.heartbeats import FORGET_SECONDS, Beat, Heartbeat, assess, read_health
from bot.supervisor import TaskState

NOW = 1_800_000_000.0


def _beat(task: str, consumer: str, *, progress_ago: float, lag: int | None) -> Beat:
    return Beat(
        task=task,
        consumer=consumer,
        role="sender",
        pid=1,
        handled=10,
        last_progress=NOW - progress_ago,
        lag=lag,
        restarts=0,
        running=True,
        written=NOW - 1,
    )


def _states(beats: dict[str, Beat], seen: dict[str, float]) -> dict[str, str]:
    return {
        f"{v.task}:{v.consumer}": v.state for v in assess(beats, seen, now=NOW, stall_seconds=60.0)
    }


def test_a_fresh_heartbeat_is_ok_even_idle_with_an_empty_queue() -> None:
    beats = {
        "sender:a": _beat("sender", "a", progress_ago=3600, lag=0),
        "timer-poller:a": _beat("timer-poller", "a", progress_ago=3600, lag=None),
        "inbound-worker:a": _beat("inbound-worker", "a", progress_ago=10, lag=500),
    }
    assert set(_states(beats, {}).values()) == {"ok"}


def test_no_progress_on_a_waiting_queue_past_the_bound_is_stalled() -> None:
    beats = {"sender:a": _beat("sender", "a", progress_ago=61, lag=198)}
    [verdict] = assess(beats, {"sender:a": NOW}, now=NOW, stall_seconds=60.0)
    assert verdict.state == "stalled" and not verdict.healthy
    assert "198 entries waiting" in verdict.detail


def test_a_seen_task_whose_heartbeat_expired_is_dead_unless_another_process_runs_it() -> None:
    seen = {"sender:a": NOW - 45, "inbound-worker:a": NOW - 45}
    beats = {"inbound-worker:b": _beat("inbound-worker", "b", progress_ago=1, lag=0)}
    states = _states(beats, {**seen, "inbound-worker:b": NOW})
    assert states == {"sender:a": "dead", "inbound-worker:a": "gone", "inbound-worker:b": "ok"}


def test_a_role_never_deployed_is_not_listed_and_old_deaths_are_forgotten() -> None:
    assert assess({}, {}, now=NOW, stall_seconds=60.0) == []
    assert _states({}, {"sender:a": NOW - FORGET_SECONDS - 1}) == {}


async def test_heartbeats_round_trip_through_redis_and_a_clean_stop_is_not_a_death(
    redis_client: Redis,
) -> None:
    handled = 0
    lag = 5
    state = TaskState("sender", running=True)

    async def probe() -> int | None:
        return lag

    heartbeat = Heartbeat(
        redis_client,
        task="sender",
        consumer="host-1",
        role="sender",
        state=state,
        handled=lambda: handled,
        lag=probe,
        interval=0.01,
    )
    first = await heartbeat.beat()
    handled = 3
    second = await heartbeat.beat()
    assert second.handled == 3 and second.last_progress >= first.last_progress
    ttl = await redis_client.ttl(redis_keys.HEARTBEAT.format(task="sender", consumer="host-1"))
    assert 0 < ttl <= 30
    [verdict] = await read_health(redis_client, stall_seconds=60.0)
    assert (verdict.task, verdict.consumer, verdict.state) == ("sender", "host-1", "ok")
    assert verdict.beat is not None and verdict.beat.lag == 5

    stop = asyncio.Event()
    runner = asyncio.create_task(heartbeat.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await runner
    assert await read_health(redis_client, stall_seconds=60.0) == []


async def test_a_task_given_up_on_stays_known_as_dead(redis_client: Redis) -> None:
    state = TaskState("crm-deliverer")
    heartbeat = Heartbeat(
        redis_client, task="crm-deliverer", consumer="host-2", role="sender", state=state
    )
    await heartbeat.beat()
    state.abandoned = True
    stop = asyncio.Event()
    stop.set()
    await heartbeat.run(stop)
    [verdict] = await read_health(redis_client, stall_seconds=60.0)
    assert (verdict.task, verdict.state) == ("crm-deliverer", "dead")
    assert (
        time.time()
        - float(
            await redis_client.hget(redis_keys.HEARTBEATS_SEEN.name, "crm-deliverer:host-2") or 0
        )
        < 60
    )
