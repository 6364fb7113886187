"""Owning a fair share of N shards through leases, with one consumer task per owned shard.

The inbound worker (`bot.inbound`) and the CRM deliverer (`bot.crm.deliverer`) both consume
sharded streams where one shard must have exactly one consumer at a time (that is what keeps one
contact's events in order across processes). This is their common half: renew the leases held,
give back shards beyond `ceil(shards / alive)` so live processes split them evenly, take free
ones, run `consume(shard, stopping)` for each, and release a shard's lease when its consumer ends
or crashes so another process can try. What a consumer does with its shard is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from bot.leases import ShardLeases

log = logging.getLogger(__name__)

ShardConsumer = Callable[[int, asyncio.Event], Awaitable[None]]


class ShardOwner:
    """Keeps this process's share of `shards` leased and a `consume` task running for each."""

    def __init__(
        self,
        redis: Redis,
        consume: ShardConsumer,
        *,
        shards: int,
        lease_prefix: str,
        consumer: str,
        lease_ms: int,
        name: str,
        transient: tuple[type[BaseException], ...],
    ) -> None:
        """`transient`: the errors that mean Redis is unreachable (log and retry, not crash)."""
        self._consume = consume
        self._shards = shards
        self._name = name
        self._transient = transient
        self.leases = ShardLeases(redis, prefix=lease_prefix, consumer=consumer, ttl_ms=lease_ms)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stopping: dict[int, asyncio.Event] = {}

    @property
    def owned_shards(self) -> frozenset[int]:
        return frozenset(s for s, t in self._tasks.items() if not t.done())

    async def run(self, stop: asyncio.Event) -> None:
        """Balance leases until `stop` is set; then let every consumer finish its entry."""
        interval = self.leases.ttl_ms / 3000
        try:
            while not stop.is_set():
                try:
                    await self._rebalance()
                except self._transient as exc:
                    log.warning("%s cannot reach Redis (%s); retrying", self._name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            await self._shutdown()

    async def _rebalance(self) -> None:
        # Renew first and never wait on a shard here: a slow shard must not cost us our leases.
        for shard, task in list(self._tasks.items()):
            if task.done():
                self._forget(shard)
            elif not await self.leases.renew(shard):
                log.warning("%s lost the lease of shard %d; stopping it", self._name, shard)
                task.cancel()
                self._forget(shard)
        alive = await self.leases.heartbeat()
        target = math.ceil(self._shards / alive)
        for shard in sorted(self._tasks)[target:]:
            self._stopping[shard].set()  # it finishes its entry, then releases the lease
        free = [s for s in range(self._shards) if s not in self._tasks]
        random.shuffle(free)
        for shard in free:
            if len(self._tasks) >= target:
                break
            if await self.leases.acquire(shard):
                stopping = asyncio.Event()
                self._stopping[shard] = stopping
                self._tasks[shard] = asyncio.create_task(
                    self._run_shard(shard, stopping), name=f"{self._name}-shard-{shard}"
                )

    def _forget(self, shard: int) -> None:
        self._tasks.pop(shard, None)
        self._stopping.pop(shard, None)

    async def _shutdown(self) -> None:
        for stopping in self._stopping.values():
            stopping.set()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self._stopping.clear()
        with contextlib.suppress(Exception):
            await self.leases.leave()

    async def _run_shard(self, shard: int, stopping: asyncio.Event) -> None:
        try:
            await self._consume(shard, stopping)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "%s shard %d crashed; its lease is released for another try", self._name, shard
            )
        finally:
            if self._tasks.get(shard) is asyncio.current_task():
                self._forget(shard)
            with contextlib.suppress(Exception):
                await self.leases.release(shard)
