"""A stand-in for `python -m trainer refresh` in the plugin's unit tests: the same arguments, exit codes
and output files (the handoff module's), on a tiny model, without torch. What it does is set by the
FAKE_TRAINER variable (JSON): {"exit": 0|3|2|1, "version": str, "yellow": bool, "sleep": seconds,
"labels": [...], "threshold": float, "metrics": {...}, "gate": <raw gate.json text>, "hang": true,
"symlink_model": path}.
"hang": ignore SIGTERM and start a child (in the trainer's process group) that ignores it too, both
sleeping for ever (their pids in hung.json). The end-to-end test runs the real trainer."""

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nailong_testkit import TINY_THRESHOLD, build_tiny_model

from nailong_vision.handoff import (
    CHECKPOINT_FILE,
    CORRECTION_LABELS,
    GATE_FILE,
    GATE_MARKDOWN_FILE,
    MODEL_FILE,
    AgreementCheck,
    CorrectionsCheck,
    ExitCode,
    GateChecks,
    GateReport,
)

parser = argparse.ArgumentParser()
parser.add_argument("command", choices=["refresh"])
for name in ("--base", "--feedback", "--recent", "--out", "--config"):
    parser.add_argument(name)
parser.add_argument("--budget-seconds", type=int)
parser.add_argument("--threads", type=int)
args = parser.parse_args()
plan = json.loads(os.environ.get("FAKE_TRAINER", "{}"))
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
# What the plugin's side is tested on: the arguments, the priority and the threads it was given.
(out / "fake_call.json").write_text(json.dumps({
    "argv": sys.argv[1:], "niceness": os.nice(0), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
    "base_files": sorted(p.name for p in Path(args.base).iterdir()), "cwd": os.getcwd(),
}))
print("fake trainer: refreshing", flush=True)
if plan.get("hang"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"])
    (out / "hung.json").write_text(json.dumps({"trainer": os.getpid(), "child": child.pid, "group": os.getpgrp()}))
    time.sleep(3600)
time.sleep(plan.get("sleep", 0))
code = plan.get("exit", ExitCode.GATE_PASSED)
if code == ExitCode.ERROR:
    print(f"Traceback: something broke in {Path(__file__).resolve()}", flush=True)
    sys.exit(code)
if code == ExitCode.BAD_INPUT:
    print("bad input: no corrections", flush=True)
    sys.exit(code)
corrections = sum(1 for p in Path(args.feedback).glob("*/*") if p.is_file() and p.parent.name in CORRECTION_LABELS)
version = plan.get("version", "0.0.1+r1")
passed = code == ExitCode.GATE_PASSED
gate = GateReport(
    passed=passed, version=version, base_version="0.0.1", corrections=corrections,
    reasons=[] if passed else ["corrections: 3/5 decided their way (need all)"],
    checks=GateChecks(
        corrections=CorrectionsCheck(passed=passed, agreed=5 if passed else 3, total=5),
        agreement=AgreementCheck(passed=True, rate=0.99, images=120, target=0.98),
        validation=None,
    ),
    seconds=1.5, steps=12,
)  # fmt: skip
(out / GATE_FILE).write_text(plan.get("gate", gate.to_json()))
(out / GATE_MARKDOWN_FILE).write_text("# gate\n")
if passed:
    model = build_tiny_model(
        out / MODEL_FILE, version=version, yellow=plan.get("yellow", False), labels=plan.get("labels"),
        threshold=plan.get("threshold", TINY_THRESHOLD),
        extra_metadata={
            "lineage": json.dumps({"base_version": "0.0.1", "corrections": corrections}),
            "metrics": json.dumps(plan.get("metrics", {})),
        },
    )
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    (out / f"{MODEL_FILE}.sha256").write_text(plan.get("sha256", digest) + "\n")
    (out / CHECKPOINT_FILE).write_bytes(b"fake checkpoint")
    if "symlink_model" in plan:
        # The model file a link to one outside the store (the same bytes: only where it lies differs).
        outside = Path(plan["symlink_model"])
        outside.parent.mkdir(parents=True, exist_ok=True)
        model.replace(outside)
        model.symlink_to(outside)
sys.exit(code)
