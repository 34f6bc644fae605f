"""Admins' corrections become training data that fine-tunes the shipped model."""

import json

import numpy as np
import onnx
import torch

from nailong_bot.corrections import Corrections
from trainer.data import prepare_data
from trainer.export import export_command
from trainer.loop import train

from .conftest import encode, nailong_like, other_like, tiny_config


def test_corrections_folder_fine_tunes_the_shipped_checkpoint(trained, tmp_path, image_root):
    _, _, onnx_path = trained
    shipped = onnx_path.with_suffix(".pt")
    assert shipped.exists()
    rng = np.random.default_rng(42)
    corrections = Corrections(tmp_path / "feedback")
    for index in range(3):
        corrections.add(encode(nailong_like(rng)), label="nailong", group_id=1, user_id=2, score=0.2,
                        model_version="test", everywhere=True)
        corrections.add(encode(other_like(rng), "JPEG"), label="other", group_id=1, user_id=2, score=0.9,
                        model_version="test", everywhere=True)
    # A group admin's correction waits beside the training folders: not trained on.
    corrections.add(encode(other_like(rng)), label="nailong", group_id=1, user_id=3, score=0.1, model_version="test")
    cfg = tiny_config(tmp_path, image_root, f"data=['{image_root}', '{tmp_path / 'feedback'}']",
                      f"init_checkpoint={shipped}", "max_steps=2", "eval_every=2")
    data = prepare_data(cfg)
    assert data.summary["sources"][str(tmp_path / "feedback")] == {"nailong": 3, "other": 3}

    start = torch.load(shipped, weights_only=False)["model"]
    train(cfg, data=data)
    tuned = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)["model"]
    assert any(not torch.equal(start[k], tuned[k]) for k in start)

    out = export_command(str(tmp_path / "ckpt" / "best.pt"), str(tmp_path / "tuned.onnx"), version="tuned")
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["data"])["sources"][str(tmp_path / "feedback")] == {"nailong": 3, "other": 3}
    assert json.loads(metadata["training"])["init_checkpoint"] == str(shipped)
