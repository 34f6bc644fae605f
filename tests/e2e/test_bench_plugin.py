"""The plugin bench runs through (on a tiny model, a few samples): nothing else calls it, so a change to the
code it drives would otherwise break it unnoticed (it once did: `act` gained its `lang` argument)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_bench_runs_and_prints_its_targets() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_plugin.py"), "--tiny", "--repeat", "3", "--sparse", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "act (recall + reply" in run.stdout
    assert "decision latency (posted → delete_msg)" in run.stdout and "Targets:" in run.stdout
