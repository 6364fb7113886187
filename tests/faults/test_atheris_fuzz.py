"""Runs the atheris harness (tests/faults/fuzz_normaliser.py) for a bounded number of inputs.

It starts from a corpus of the real envelopes the hypothesis tests mutate, so libFuzzer begins
deep inside the normaliser. `ATHERIS_RUNS` sets the number of inputs (CI: 20,000, a few seconds);
a crash fails the test with libFuzzer's report, which names the input file that caused it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.test_fuzz_webhook import SEEDS

pytestmark = pytest.mark.slow
HARNESS = Path(__file__).with_name("fuzz_normaliser.py")
ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("ATHERIS_RUNS", "20000"))


def test_atheris_finds_no_crash_in_the_normaliser(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (pip install -e '.[test]')")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, payload in enumerate(SEEDS):
        (corpus / f"seed-{n}.json").write_text(json.dumps(payload))
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            str(corpus),
            f"-runs={RUNS}",
            "-max_len=65536",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} runs" in result.stderr
