"""How far 5 review labels and a refresh take a family the model is unsure of, on this machine.

    .venv/bin/python bench/bench_review_family.py --family anyliew/meme_emoji --budget 600 --threads 2
    .venv/bin/python bench/bench_review_family.py --mined <rounds>/*/to_label.csv \
        --family pleroma-custom/static/emoji/spinny --pick top       # a mined family the model acts on more
    .venv/bin/python bench/bench_review_family.py --folder .cache/datasets/family-negatives \
        --family zalo-stickers/noc-kute-game-i-ca,zalo-stickers/ai-ca-hong --pick top   # a rebuilt family folder

A family held out of training (a wild source of `nailong-negatives`, never trained on) is scored with the bundled
model; 5 of its images that the bot would act on or queue for review are labelled `other` (as an admin on the
review page would, through the plugin's corrections store); the bot's recent images are simulated (450 other images
of trained sources, 50 nailong), as the plugin keeps them. `trainer refresh` runs on them with the given budget and
threads; then the family's other images are scored by the candidate: how many are acted on (≥ threshold) and how
many would wait for review ([review floor, threshold)), before and after, and the nailong of the recent set
(trained-on images: a coarse check that recall stays; the gate's numbers say more).

No held-out family of our data is acted on much by the bundled model (the wild set's worst source, anyliew/meme_emoji,
2 of 233), so what this measures is the band: how much of an unseen family still waits for review after a few labels.
One run, 2026-12-07, the project's 2-core box shared with other jobs (load 7–11), the bundled Lite0 2026.12.03.1,
defaults otherwise (600-s budget, 2 threads, seed 0): anyliew/meme_emoji, 5 labels; the other 233 images: acted on
0.9 % → 0.0 %, queued for review 11.6 % → 4.7 %; the 50 replayed nailong 0.98 → 0.98; the refresh took 508 s for
only 5 steps (the busy box) and passed its gate.

A mined family the bundled model acts on more (``--mined``: the CSVs of a mining round, images on this disk, not
trained on): pleroma-custom/static/emoji/spinny, 87 GIFs, its 5 highest-scoring labelled (``--pick top``), the same
box (load 3.5–7.5), one run each: the other 82 acted on 22.0 % → 0.0 % both before the refresh change (4 random
correction views a batch: 19 steps, 358 s, gate failed at 97.8 % agreement) and after it (8 views, every correction
in turn: 30 steps, 684 s, gate passed at 98.8 %); recall on 250 nailong 0.98 → 0.98 both times. The README has it.

A family of a rebuilt family folder (``--folder``: ``trainer mine --rebuild datasets/family-negatives/MANIFEST.csv``),
on an idle box (load 1.2–1.7), 2026-12-07: Zalo's green pufferfish mascot
(``--family zalo-stickers/noc-kute-game-i-ca,zalo-stickers/ai-ca-hong --pick top``, 44 images), the other 39 acted on
20.5 % → 0 % and queued 46.2 % → 0 % in 376 s (86 steps, gate passed at 99.4 %), nailong 0.980 → 0.972.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nailong_bot.corrections import Corrections  # noqa: E402
from nailong_bot.recent import RecentImages  # noqa: E402
from trainer.scoring import load_scorer  # noqa: E402



def scores(model: Path, files: list[Path]) -> list[float]:
    scorer = load_scorer(model)
    return [float(scorer.score_bytes(path.read_bytes())[scorer.positive_index]) for path in files]


def shares(values: list[float], threshold: float, floor: float) -> tuple[float, float]:
    n = len(values)
    return sum(v >= threshold for v in values) / n, sum(floor <= v < threshold for v in values) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="anyliew/meme_emoji",
                        help="a source of nailong-negatives, or with --mined a family column of the mined CSVs")
    parser.add_argument("--mined", type=Path, nargs="*", default=[],
                        help="mined to_label.csv files (number,score,label,family,…,path) to take the family from")
    parser.add_argument("--folder", type=Path,
                        help="a rebuilt family folder (trainer mine --rebuild datasets/family-*/MANIFEST.csv) to take "
                             "the family from: --family is then its manifest's family column, or several joined by "
                             "commas (one character in several packs)")
    parser.add_argument("--pick", choices=("random", "top"), default="random",
                        help="which flagged images get the labels: a random few, or the highest-scoring (the ones "
                             "an admin sees recalled first)")
    parser.add_argument("--budget", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets",
                        help="where nailong-negatives and nailong-binary are (the configs' ../shared/datasets)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    negatives = args.datasets / "nailong-negatives"
    manifest = list(csv.DictReader((negatives / "MANIFEST.csv").open(encoding="utf-8")))
    if args.folder:
        family = _folder_family(args.folder, args.family)
    elif args.mined:
        family = _mined_family(args.mined, args.family)
    else:
        family = [negatives / r["file"] for r in manifest if r["source_repo"] == args.family and r["label"] == "other"]
    model = ROOT / "models" / "nailong.onnx"
    scorer = load_scorer(model)
    threshold, floor = scorer.threshold, _floor(model)
    before = dict(zip(family, scores(model, family)))
    flagged = [path for path, score in before.items() if score >= floor]
    labelled = (sorted(flagged, key=before.get, reverse=True)[: args.labels] if args.pick == "top"
                else rng.sample(flagged, args.labels))
    rest = [path for path in family if path not in labelled]

    work = Path(tempfile.mkdtemp(prefix="review-family-"))
    corrections = Corrections(work / "feedback")
    for path in labelled:
        corrections.add(path.read_bytes(), label="other", group_id=1, user_id="web:bench", score=before[path],
                        model_version=scorer.name.split()[-1], everywhere=True)  # fmt: skip
    trained_other = [negatives / r["file"] for r in manifest if r["source_repo"] != args.family and r["label"] == "other"
                     and r["source_repo"] not in _wild_sources()]  # fmt: skip
    nailong = sorted((args.datasets / "nailong-binary" / "nailong").iterdir())
    replay = rng.sample(trained_other, 450) + rng.sample(nailong, 50)
    recent = RecentImages(work / "recent", max_images=1000, max_bytes=1 << 30, max_age=1e9)
    replay_scores = scores(model, replay)
    for n, (path, score) in enumerate(zip(replay, replay_scores)):
        recent.remember(n, 1, path.read_bytes(), image_key=str(n), score=score, model_version=scorer.name.split()[-1],
                        hit=score >= threshold)  # fmt: skip

    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "trainer", "refresh", "--base", str(ROOT / "models"), "--feedback", str(work / "feedback"),
         "--recent", str(work / "recent"), "--out", str(work / "out"), "--budget-seconds", str(args.budget),
         "--threads", str(args.threads), "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.monotonic() - started
    gate = json.loads((work / "out" / "gate.json").read_text(encoding="utf-8")) if (work / "out" / "gate.json").exists() else {}
    after_model = work / "out" / "nailong.onnx"
    rest_before = [before[p] for p in rest]
    # Recall: the replayed nailong, and as many again that the refresh never saw.
    nailong_probe = replay[450:] + rng.sample([p for p in nailong if p not in replay], 200)
    result = {
        "family": args.family, "family_images": len(family), "labelled": args.labels, "rest": len(rest),
        "threshold": threshold, "review_floor": floor, "exit_code": run.returncode, "wall_seconds": round(wall, 1),
        "load_average": os.getloadavg(), "steps": gate.get("steps"),
        "step_seconds": gate.get("details", {}).get("step_seconds"),
        "corrections_per_batch": gate.get("details", {}).get("settings", {}).get("corrections_per_batch"),
        "gate_agreement": gate.get("checks", {}).get("agreement"), "gate_passed": gate.get("passed"), "gate_reasons": gate.get("reasons"),
        "before": dict(zip(("acted_on", "queued"), shares(rest_before, threshold, floor))),
        "nailong_probe": len(nailong_probe), "nailong_recall_before": shares(scores(model, nailong_probe), threshold, floor)[0],
    }  # fmt: skip
    if after_model.exists():
        rest_after = scores(after_model, rest)
        result["after"] = dict(zip(("acted_on", "queued"), shares(rest_after, threshold, floor)))
        result["nailong_recall_after"] = shares(scores(after_model, nailong_probe), threshold, floor)[0]
    else:
        result["stderr_tail"] = run.stderr[-2000:]
    print(json.dumps(result, indent=2, ensure_ascii=False))
    shutil.rmtree(work, ignore_errors=True)


def _mined_family(files: list[Path], family: str) -> list[Path]:
    """The family's images listed by mining rounds (paths on this disk; labels there are blank or "other")."""
    rows = [row for file in files for row in csv.DictReader(file.open(encoding="utf-8")) if row["family"] == family]
    assert rows, f"no rows of {family} in {files}"
    assert all(row["label"] in ("", "other") for row in rows), f"{family} has nailong labels: not a negative family"
    return sorted({Path(row["path"]) for row in rows})


def _folder_family(folder: Path, family: str) -> list[Path]:
    """The family's images in a rebuilt family folder (its MANIFEST's family column, or several comma-separated;
    all of them "other")."""
    names = set(family.split(","))
    rows = [row for row in csv.DictReader((folder / "MANIFEST.csv").open(encoding="utf-8")) if row["family"] in names]
    assert rows, f"no rows of {family} in {folder}"
    assert all(row["label"] == "other" for row in rows), f"{family} has nailong labels: not a negative family"
    return sorted(folder / row["file"] for row in rows)


def _floor(model: Path) -> float:
    from nailong_vision.classifier import Classifier

    floor = Classifier(model, providers=["CPUExecutionProvider"]).info.review_floor
    assert floor is not None, "the model has no review floor"
    return floor


def _wild_sources() -> set[str]:
    import yaml

    return set(yaml.safe_load((ROOT / "configs" / "lite0-wild.yaml").read_text(encoding="utf-8"))["wild_sources"])


if __name__ == "__main__":
    main()
