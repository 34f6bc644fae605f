"""predict: label and P(nailong) for image files and folders, decoded like the plugin does."""

from __future__ import annotations

from pathlib import Path

from nailong_vision.decode import ImageDecodeError

from .data import IMAGE_SUFFIXES
from .scoring import load_scorer


def expand(paths: list[str]) -> list[Path]:
    files = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        else:
            files.append(path)
    return files


def predict_command(model: str, paths: list[str], threshold: float | None = None) -> int:
    """Print one tab-separated line per file; returns 1 if any file could not be read."""
    scorer = load_scorer(model)
    threshold = scorer.threshold if threshold is None else threshold
    failed = 0
    print(f"# model {scorer.name}, threshold {threshold:.4f}")
    print("verdict\tP(nailong)\tfile")
    for path in expand(paths):
        try:
            probs = scorer.score_bytes(path.read_bytes())
        except (OSError, ImageDecodeError) as error:
            failed += 1
            print(f"error\t-\t{path}\t{error}")
            continue
        score = probs[scorer.positive_index]
        print(f"{scorer.verdict(probs, threshold)}\t{score:.4f}\t{path}")
    return 1 if failed else 0
