"""A stand-in for `python -m trainer refresh` in the plugin's unit tests: the same arguments, exit codes
and output files, on a tiny model, without torch. What it does is set by the FAKE_TRAINER variable
(JSON): {"exit": 0|3|2|1, "version": str, "yellow": bool, "sleep": seconds, "labels": [...]}.
The end-to-end test runs the real trainer."""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from nailong_testkit import build_tiny_model

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
time.sleep(plan.get("sleep", 0))
code = plan.get("exit", 0)
if code == 1:
    print("Traceback: something broke", flush=True)
    sys.exit(1)
if code == 2:
    print("bad input: no corrections", flush=True)
    sys.exit(2)
corrections = sum(1 for p in Path(args.feedback).glob("*/*") if p.is_file() and p.parent.name in ("nailong", "other"))
version = plan.get("version", "0.0.1+r1")
passed = code == 0
gate = {
    "passed": passed, "version": version, "base_version": "0.0.1", "corrections": corrections,
    "reasons": [] if passed else ["corrections: 3/5 decided their way (need all)"],
    "checks": {
        "corrections": {"passed": passed, "agreed": 5 if passed else 3, "total": 5},
        "agreement": {"passed": True, "rate": 0.99, "images": 120},
        "validation": None,
    },
    "changed": [], "seconds": 1.5, "steps": 12,
}
(out / "gate.json").write_text(json.dumps(gate))
(out / "gate.md").write_text("# gate\n")
if passed:
    model = build_tiny_model(
        out / "nailong.onnx", version=version, yellow=plan.get("yellow", False), labels=plan.get("labels"),
        extra_metadata={"lineage": json.dumps({"base_version": "0.0.1", "corrections": corrections})},
    )
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    (out / "nailong.onnx.sha256").write_text(plan.get("sha256", digest) + "\n")
    (out / "nailong.pt").write_bytes(b"fake checkpoint")
sys.exit(code)
