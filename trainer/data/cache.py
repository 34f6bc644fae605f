"""Cache: decode every record once, the way the plugin decodes it, into arrays kept on disk."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nailong_vision.decode import ImageDecodeError, decode_frames, sample_frame_indices
from nailong_vision.phash import phash
from nailong_vision.preprocess import PreprocessSpec, resize_rgb

from ..config import TrainConfig
from .sources import ImageRecord

log = logging.getLogger(__name__)

# Training crops come from a slightly larger cached copy so the crop still has detail.
CACHE_SCALE = 1.15
# Images between two hand-backs of freed frame memory while the cache is assembled (a trim costs milliseconds).
TRIM_EVERY = 1000


@dataclass
class DecodedImage:
    """An image decoded the way the plugin decodes it: the frames it samples, at model size."""

    eval_frames: np.ndarray  # uint8 [F, S, S, 3], exactly what the plugin feeds the model
    train_frames: np.ndarray  # uint8 [F', C, C, 3], larger copies for random crops
    hash: int


def decode_record(data: bytes, spec: PreprocessSpec, eval_frames: int, train_frames: int) -> DecodedImage:
    frames = decode_frames(data, max_frames=eval_frames, draft_size=spec.size)
    cache_size = math.ceil(spec.size * CACHE_SCALE)
    train_pick = sample_frame_indices(len(frames), train_frames)
    return DecodedImage(
        eval_frames=np.stack([resize_rgb(f, spec.size, spec.resize) for f in frames]),
        train_frames=np.stack([resize_rgb(frames[i], cache_size, spec.resize) for i in train_pick]),
        hash=phash(frames[0]),
    )


def _decode_job(args) -> DecodedImage | str:
    record, spec, eval_frames, train_frames = args
    try:
        return decode_record(record.read(), spec, eval_frames, train_frames)
    except (ImageDecodeError, OSError) as error:
        return f"{record.source}: {error}"


def _cache_key(records: list[ImageRecord], cfg: TrainConfig, spec: PreprocessSpec) -> str:
    digest = hashlib.sha256()
    for record in records:
        stat = Path(record.source).stat() if record.data is None else None
        digest.update(f"{record.source}|{record.label}|{stat.st_size if stat else len(record.data)}\n".encode())
    digest.update(json.dumps([spec.as_dict(), cfg.eval_frames, cfg.train_frames, CACHE_SCALE]).encode())
    return digest.hexdigest()[:16]


def concatenate_releasing(decoded: list[DecodedImage], field: str) -> np.ndarray:
    """``np.concatenate`` of one frame field of every image, dropping each image's frames once copied and handing
    their memory back every TRIM_EVERY images: the decoded frames and the result never both sit in memory whole,
    so a cache of N GB needs about N, not 2N."""
    first = getattr(decoded[0], field)
    out = np.empty((sum(len(getattr(d, field)) for d in decoded), *first.shape[1:]), dtype=first.dtype)
    position = 0
    for count, image in enumerate(decoded, start=1):
        frames = getattr(image, field)
        out[position:position + len(frames)] = frames
        position += len(frames)
        setattr(image, field, np.empty((0, *frames.shape[1:]), dtype=frames.dtype))  # a view would keep it alive
        if count % TRIM_EVERY == 0:
            return_freed_memory()
    return_freed_memory()
    return out


def return_freed_memory() -> None:
    """Hand the decoded frames' freed pages back to the system. glibc keeps the many small frame arrays' memory in
    its heap after they are freed, so a run that decodes and then trains in one process held the cache twice (an
    11 GB cache was killed on a 23 GB machine). Other C libraries need no call."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def decode_all(records: list[ImageRecord], cfg: TrainConfig, spec: PreprocessSpec) -> dict:
    """Decode every record once (in worker processes) into arrays cached on disk."""
    cache = Path(cfg.cache_dir) / f"decoded-{_cache_key(records, cfg, spec)}.npz"
    if cache.exists():
        log.info("using decoded cache %s", cache)
        with np.load(cache) as stored:
            return {key: stored[key] for key in stored.files}
    log.info("decoding %d images into %s (once)", len(records), cache)
    jobs = [(record, spec, cfg.eval_frames, cfg.train_frames) for record in records]
    workers = max(1, cfg.num_workers)
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(_decode_job, jobs, chunksize=16))
    ok = [i for i, r in enumerate(results) if isinstance(r, DecodedImage)]
    for failure in (r for r in results if isinstance(r, str)):
        log.warning("skipped undecodable image: %s", failure)
    decoded = [results[i] for i in ok]
    del results
    arrays = {
        "ok": np.array(ok, dtype=np.int64),
        "hash": np.array([d.hash for d in decoded], dtype=np.uint64),
        "eval_owner": np.concatenate([np.full(len(d.eval_frames), k) for k, d in enumerate(decoded)]),
        "train_owner": np.concatenate([np.full(len(d.train_frames), k) for k, d in enumerate(decoded)]),
    }
    arrays["eval_pixels"] = concatenate_releasing(decoded, "eval_frames")
    arrays["train_pixels"] = concatenate_releasing(decoded, "train_frames")
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".tmp.npz")
    np.savez(partial, **arrays)
    partial.replace(cache)
    return arrays

