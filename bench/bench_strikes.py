"""What one hit costs the strike store at 30,000 strikes, before and after the journal (issue 21).

    .venv/bin/python bench/bench_strikes.py                 # before: the strikes.py of --before
    .venv/bin/python bench/bench_strikes.py --before 54ce94b --strikes 30000 --hits 200

Both stores are run in this one process, each in a fresh folder holding the same 30,000 strikes, and
each hit is what the pipeline does: ``add`` (and a mute noted for every third), then ``await save()``.
"Before" is nailong_bot/strikes.py as it was at ``--before`` (read with `git show`), which rewrote
strikes.json whole on every save, its JSON made on the event loop. Printed per hit: the median and
95th percentile of the wall time, the time the event loop was busy (the rest was a worker thread's),
the bytes written; and what one fold of the journal into the snapshot costs now (in a worker thread,
once per as many changes as there are strikes).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nailong_bot import persist, strikes  # noqa: E402

DAY = 24 * 3600.0


def strikes_module_at(ref: str):
    """nailong_bot/strikes.py as it was at ``ref``, imported beside today's (it shares persist.py)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:nailong_bot/strikes.py"], check=True, capture_output=True, text=True
    ).stdout
    spec = importlib.util.spec_from_loader("nailong_bot.strikes_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, f"{ref}:nailong_bot/strikes.py", "exec"), module.__dict__)
    return module


class Written:
    """Counts the bytes every strikes write puts on disk."""

    def __init__(self) -> None:
        self.bytes = 0
        self._append, self._write = persist.append, persist.write_atomically

    def __enter__(self) -> Written:
        def append(path, text, **kwargs):
            self.bytes += len(text.encode())
            self._append(path, text, **kwargs)

        def write(path, data, **kwargs):
            self.bytes += len(data)
            self._write(path, data, **kwargs)

        persist.append, persist.write_atomically = append, write
        return self

    def __exit__(self, *exc) -> None:
        persist.append, persist.write_atomically = self._append, self._write


async def per_hit(module, folder: Path, existing: int, hits: int) -> dict[str, float]:
    store = module.StrikeStore(folder, window=DAY)
    store.load()
    for number in range(existing):
        store.add(1000 + number % 50, 100_000 + number % 3000, number)
    await store.save()
    walls, on_loop, written = [], [], []
    for hit in range(hits):
        message_id = existing + hit
        with Written() as counted:
            started, cpu = time.perf_counter(), time.thread_time()
            store.add(1000 + hit % 50, 100_000 + hit % 3000, message_id)
            if hit % 3 == 0:
                store.note_mute(1000 + hit % 50, message_id, 600)
            await store.save()
            walls.append(time.perf_counter() - started)
            on_loop.append(time.thread_time() - cpu)  # this thread's CPU: the event loop's share
        written.append(counted.bytes)
    ordered = sorted(walls)
    return {
        "median_ms": statistics.median(walls) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        "loop_ms": statistics.median(on_loop) * 1000,
        "bytes": statistics.median(written),
    }


async def fold_cost(folder: Path, existing: int) -> float:
    store = strikes.StrikeStore(folder, window=DAY)
    store.load()
    for number in range(existing):
        store.add(1000 + number % 50, 100_000 + number % 3000, number)
    started = time.perf_counter()
    await asyncio.to_thread(store._write_snapshot, list(store._strikes))
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="54ce94b", help="the commit whose strikes.py is 'before'")
    parser.add_argument("--strikes", type=int, default=30_000)
    parser.add_argument("--hits", type=int, default=200)
    args = parser.parse_args()
    before = strikes_module_at(args.before)
    print(f"{args.strikes:,} strikes, {args.hits} hits each (add, a mute noted every third, save)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, module in (("before", before), ("after", strikes)):
            result = await per_hit(module, Path(tmp) / name, args.strikes, args.hits)
            print(
                f"  {name:6}: median {result['median_ms']:8.2f} ms, p95 {result['p95_ms']:8.2f} ms, "
                f"on the event loop {result['loop_ms']:8.2f} ms, written {result['bytes'] / 1024:9.1f} KiB a hit"
            )
        folded = await fold_cost(Path(tmp) / "fold", args.strikes)
        print(f"  after: one fold of the journal into the snapshot {folded:.0f} ms, in a worker thread, "
              f"once per {args.strikes:,} changes")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
