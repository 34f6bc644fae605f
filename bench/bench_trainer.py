"""Trainer benchmark: training images/s for a config, the data pipeline's images/s alone (it must
be ≥ 3× the training rate so the model, not loading, is the bottleneck), and export time.

    .venv/bin/python bench/bench_trainer.py --config configs/shipped.yaml [--steps 30]

Prints medians of per-batch rates measured in this one run. On an NVIDIA GPU pass
``device=cuda enable_amp=true`` to measure the AMP path.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from trainer.config import load_config
from trainer.data import SampleStream, TrainSet, prepare_data
from trainer.export import check_parity, to_onnx
from trainer.loop import amp_context, pick_device
from trainer.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/shipped.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    device = pick_device(cfg.device, 0)
    data = prepare_data(cfg)
    loader = torch.utils.data.DataLoader(
        TrainSet(data, cfg),
        batch_size=cfg.batch_size,
        sampler=SampleStream(data.train_weights, cfg.seed),
        num_workers=cfg.num_workers,
        drop_last=True,
        persistent_workers=cfg.num_workers > 0,
    )
    batches = iter(loader)
    for _ in range(3):
        next(batches)  # let the workers start
    # Rates over windows of 8 batches: single batches would mostly time the prefetched queue.
    pipeline_rates = []
    for _ in range(max(1, args.steps // 4)):
        started = time.perf_counter()
        count = sum(len(next(batches)[0]) for _ in range(8))
        pipeline_rates.append(count / (time.perf_counter() - started))

    model = build_model(cfg.model, len(data.labels), drop_path_rate=cfg.drop_path_rate)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    images, targets = next(batches)
    images = images.to(device).contiguous(memory_format=torch.channels_last)
    targets = targets.to(device)
    step_rates = []
    for step in range(args.steps + 3):
        started = time.perf_counter()
        with amp_context(device, cfg):
            loss = F.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 3:
            step_rates.append(len(images) / (time.perf_counter() - started))

    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        to_onnx(model.cpu(), Path(tmp) / "m.onnx", cfg.image_size, 20)
        check_parity(model, Path(tmp) / "m.onnx", cfg.image_size)
        export_seconds = time.perf_counter() - started

    pipeline, training = statistics.median(pipeline_rates), statistics.median(step_rates)
    print(
        f"device {device}, model {cfg.model} @ {cfg.image_size}px, batch {cfg.batch_size}, "
        f"workers {cfg.num_workers}, amp {cfg.enable_amp}"
    )
    print(f"training step (model only): median {training:.1f} images/s")
    print(
        f"data pipeline alone:        median {pipeline:.1f} images/s  ({pipeline / training:.1f}× the training rate)"
    )
    print(f"export + parity check:      {export_seconds:.1f} s")


if __name__ == "__main__":
    main()
