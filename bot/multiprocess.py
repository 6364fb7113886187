"""`optin-bot serve --workers N`: N processes of the whole service sharing one port.

Each child opens its own listening socket with SO_REUSEPORT, so the kernel spreads connections
over the children and no process hands sockets to another; the parent binds nothing and only
supervises. Children share nothing but Redis and PostgreSQL, which already serialise the work
(per-contact leases, de-duplication keys, consumer groups), so N children behave like N separate
`serve` processes behind a load balancer.

A child that dies while the parent is not stopping stops its siblings and makes the parent exit
non-zero, rather than being restarted here: a child that crashes at start (bad schema, port taken)
would otherwise restart forever, and the process manager that runs the service (systemd,
Kubernetes) already restarts the whole unit, counts the restarts and shows the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from aiohttp import web
from prometheus_client import multiprocess as prometheus_multiprocess

from bot.app import create_app
from bot.appkeys import LOOPS
from bot.roles import ALL_ROLES
from bot.services import StartupError, check_startup
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("optin-bot")

STOP_GRACE_SECONDS = 30.0
PARENT_WATCH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What a child needs to serve; it reads the settings itself, from the inherited environment."""

    host: str
    port: int
    log_level: str
    insecure_no_signature: bool


def run_workers(spec: ChildSpec, workers: int) -> int:
    """Start `workers` children, forward SIGTERM/SIGINT to them, and wait for them all.

    Returns 0 when every child ended after a stop signal, 1 (or the child's own non-zero status)
    when one ended by itself. The children keep their metrics in a fresh folder of
    prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, inherited through the
    environment), so `/metrics`, whichever child answers, sums the whole service.
    """
    metrics_dir = tempfile.mkdtemp(prefix="optin-bot-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _run_children(spec, workers, metrics_dir)
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_children(spec: ChildSpec, workers: int, metrics_dir: str) -> int:
    context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing inherited open
    children: list[BaseProcess] = []
    stopping = False

    def forward() -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.pid is not None and child.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    def stop(signum: int, _: FrameType | None) -> None:
        if not stopping:
            log.info("%s: stopping %d workers", signal.Signals(signum).name, len(children))
        forward()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for n in range(workers):
            if stopping:
                break
            child = context.Process(target=serve_child, args=(spec,), name=f"optin-bot-{n}")
            child.start()
            children.append(child)
        if stopping:  # a signal between two starts: the later children have not had it yet
            forward()
        log.info(
            "serving on http://%s:%d with %d worker processes: %s",
            spec.host,
            spec.port,
            workers,
            " ".join(str(c.pid) for c in children),
        )
        status = _supervise(children, lambda: stopping, metrics_dir)
        if status != 0:
            forward()
        _reap(children)
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _supervise(children: list[BaseProcess], stopping: Callable[[], bool], metrics_dir: str) -> int:
    """Wait until every child has ended; the first unexpected end decides the exit status.
    A child's counters stay in the service's totals after it ends; its live gauges go."""
    running = list(children)
    while running:
        ready = wait([c.sentinel for c in running], timeout=0.5)
        for child in [c for c in running if c.sentinel in ready]:
            child.join()
            running.remove(child)
            if child.pid is not None:
                prometheus_multiprocess.mark_process_dead(child.pid, metrics_dir)  # type: ignore[no-untyped-call]
            if not stopping():
                code = child.exitcode or 0
                log.error(
                    "worker %s (pid %s) ended unexpectedly with status %s; stopping the others",
                    child.name,
                    child.pid,
                    code,
                )
                return code if code > 0 else 1
    return 0


def _reap(children: list[BaseProcess]) -> None:
    for child in children:
        child.join(STOP_GRACE_SECONDS)
        if child.exitcode is None:
            log.error("worker %s (pid %s) ignored SIGTERM; killing it", child.name, child.pid)
            child.kill()
            child.join()


def serve_child(spec: ChildSpec) -> None:
    """The body of one child: the whole service (web, worker, sender) on a shared port."""
    # Ctrl-C reaches the whole process group; the parent turns it into one SIGTERM per child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=spec.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s",
    )
    try:
        settings = load_settings()
        check_startup(
            settings, insecure_no_signature=spec.insecure_no_signature, multi_process=True
        )
        asyncio.run(_serve(settings, spec))
    except (SettingsError, StartupError) as exc:
        print(f"optin-bot: cannot start: {exc}", file=sys.stderr)
        sys.exit(2)


async def _serve(settings: Settings, spec: ChildSpec) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    parent = os.getppid()
    app = create_app(settings, roles=ALL_ROLES, auto_migrate=False, on_give_up=stop.set)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, spec.host, spec.port, reuse_port=True).start()
        log.info("worker %d listening on http://%s:%d", os.getpid(), spec.host, spec.port)
        # An orphan keeps serving nobody's shutdown: leave when the parent is gone (kill -9).
        while not stop.is_set() and os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=PARENT_WATCH_SECONDS)
    finally:
        await runner.cleanup()
    if LOOPS in app and app[LOOPS].failed:
        # A task was given up on: the parent sees the child end and stops the service.
        sys.exit(1)
