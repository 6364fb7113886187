"""Each benchmark script runs end to end at a tiny size and prints its figures.

The figures themselves are not asserted (timing belongs in bench/, not in tests); what is pinned
is that the scripts still work against the current code, so the README's commands do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.services, pytest.mark.slow]

RUNS = {
    "ingest": (
        ["--requests", "200", "--rounds", "1", "--seconds", "5", "--stops", "20"],
        ["bare aiohttp", "STOPs"],
    ),
    "gate": (
        ["--contacts", "50", "--rounds", "1", "--seconds", "1", "--concurrency", "4"],
        ["checks/s", "p99"],
    ),
    "scale": (["--stops", "20", "--workers", "1,2"], ["1 worker", "2 workers"]),
    "campaign": (["--recipients", "50", "--rate", "100"], ["achieved", "peak"]),
    "embedded": (["--requests", "30", "--keys", "20"], ["acknowledged", "end to end"]),
    "stop_intent": (["--rounds", "1", "--repeat", "1"], ["keyword matcher", "ratio"]),
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_and_prints(script: str, real_stack_urls: tuple[str, str]) -> None:
    _, redis_url = real_stack_urls
    args, expected = RUNS[script]
    env = {**os.environ, "REDIS_URL": redis_url, "BENCH_REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, f"bench/{script}.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for word in expected:
        assert word.lower() in done.stdout.lower(), done.stdout[-2000:]
