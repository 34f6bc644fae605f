import math

import pytest
import torch
import torch.nn.functional as F

from trainer.config import load_config
from trainer.data import TrainSet, prepare_data
from trainer.loop import get_lr, train
from trainer.model import build_model, parameter_groups

from .conftest import tiny_config


def test_lr_schedule_at_known_steps():
    cfg = load_config(None, ["learning_rate=0.001", "min_lr=0.0001", "warmup_iters=10", "lr_decay_iters=110"])
    assert get_lr(0, cfg) == pytest.approx(0.001 / 11)
    assert get_lr(9, cfg) == pytest.approx(0.001 * 10 / 11)
    assert get_lr(10, cfg) == pytest.approx(0.001)
    assert get_lr(60, cfg) == pytest.approx(0.0001 + 0.5 * 0.0009)
    assert get_lr(110, cfg) == pytest.approx(0.0001)
    assert get_lr(500, cfg) == pytest.approx(0.0001)
    decay = [get_lr(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_weight_decay_skips_norms_and_biases_and_the_backbone_gets_its_own_lr_scale():
    model = build_model("convnext_atto", 2)
    groups = parameter_groups(model, 0.05, backbone_lr_scale=0.1)
    head = {id(p) for p in model.get_classifier().parameters()}
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1
        assert group["lr_scale"] == (1.0 if in_head == {True} else 0.1)
        assert group["backbone"] == (in_head == {False})
        decays = {p.ndim >= 2 for p in group["params"]}
        assert decays == {group["weight_decay"] == 0.05}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_a_few_optimizer_steps_lower_the_loss(tmp_path, image_root):
    cfg = tiny_config(tmp_path, image_root)
    data = prepare_data(cfg)
    batch = torch.stack([TrainSet(data, cfg)[(i, (0, 0, i))][0] for i in range(8)])
    targets = torch.tensor([int(data.train_targets[i]) for i in range(8)])
    torch.manual_seed(0)
    model = build_model(cfg.model, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(batch), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7


def states_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not states_equal(x, y):
                return False
        elif isinstance(x, torch.Tensor):
            if not torch.equal(x, y):
                return False
        elif isinstance(x, (list, tuple)) and x and isinstance(x[0], dict):
            if not all(states_equal(p, q) for p, q in zip(x, y)):
                return False
        elif x != y:
            return False
    return True


def test_interrupted_run_resumes_to_the_identical_state(tmp_path, image_root):
    straight = tiny_config(tmp_path / "a", image_root, "max_steps=4", "eval_every=2", "save_every=100")
    train(straight)
    reference = torch.load(tmp_path / "a" / "ckpt" / "last.pt", weights_only=False)

    interrupted = tiny_config(tmp_path / "b", image_root, "max_steps=4", "eval_every=2", "save_every=100")

    def ctrl_c(step, metrics):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(interrupted, on_eval=ctrl_c)
    saved = torch.load(tmp_path / "b" / "ckpt" / "last.pt", weights_only=False)
    assert saved["state"]["step"] == 2
    state = train(interrupted)
    resumed = torch.load(tmp_path / "b" / "ckpt" / "last.pt", weights_only=False)

    assert state.step == 4
    assert states_equal(reference["model"], resumed["model"])
    assert states_equal(reference["optimizer"], resumed["optimizer"])
    assert reference["scaler"] == resumed["scaler"]
    assert reference["state"] == resumed["state"]
    assert torch.equal(reference["rng"]["torch"], resumed["rng"]["torch"])


def test_accumulation_and_bf16_autocast_on_cpu(tmp_path, image_root):
    cfg = tiny_config(tmp_path, image_root, "max_steps=2", "eval_every=2", "gradient_accumulation_steps=2",
                      "enable_amp=true", "amp_dtype=bfloat16")
    seen = []
    state = train(cfg, on_eval=lambda step, metrics: seen.append(metrics))
    assert state.step == 2
    assert math.isfinite(seen[-1]["nailong_f1"])
    assert (tmp_path / "ckpt" / "best.pt").exists()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_torch_compile_trains_like_eager_and_saves_plain_weights(tmp_path, image_root):
    # Inductor compiles for CPU with the system C++ compiler (about 45 s here).
    eager = tiny_config(tmp_path / "eager", image_root, "max_steps=2", "eval_every=2")
    compiled = tiny_config(tmp_path / "compiled", image_root, "max_steps=2", "eval_every=2", "enable_compile=true")
    train(eager)
    assert train(compiled).step == 2
    expected = torch.load(tmp_path / "eager" / "ckpt" / "last.pt", weights_only=False)["model"]
    weights = torch.load(tmp_path / "compiled" / "ckpt" / "last.pt", weights_only=False)["model"]
    assert weights.keys() == expected.keys()  # no torch.compile wrapper prefix: export and fine-tuning load it
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-3, atol=1e-4, msg=name)


def test_ddp_under_torchrun_on_cpu(tmp_path, image_root):
    """The documented multi-GPU command, run with two CPU processes (gloo) instead of GPUs."""
    import subprocess
    import sys

    cfg = tiny_config(tmp_path, image_root, "max_steps=2", "eval_every=2", "device=cpu")
    overrides = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in cfg.to_dict().items()
                 if k in ("image_size", "batch_size", "max_steps", "warmup_iters", "lr_decay_iters", "eval_every",
                          "save_every", "num_workers", "eval_frames", "train_frames", "val_fraction", "device",
                          "cache_dir", "checkpoint_dir", "tensorboard_dir")]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "trainer", "train", f"data=['{image_root}']", *overrides],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert saved["state"]["step"] == 2


def test_five_class_training_exports_the_hub_label_set(tmp_path):
    """refoundd/NailongClassification's labels: the plugin still reads P(nailong) from the export."""
    import numpy as np
    import onnx

    from nailong_vision.classifier import Classifier
    from trainer.export import export_command

    from .conftest import encode, nailong_like, other_like

    labels = ["nailong", "emoji", "anime", "others", "long"]
    rng = np.random.default_rng(5)
    for label in labels:
        (tmp_path / "five" / label).mkdir(parents=True)
        for index in range(4):
            image = nailong_like(rng) if label == "nailong" else other_like(rng)
            (tmp_path / "five" / label / f"{index}.png").write_bytes(encode(image))
    cfg = tiny_config(tmp_path, tmp_path / "five", f"labels={labels}", "max_steps=2", "eval_every=2",
                      "val_fraction=0.25")
    train(cfg)
    out = export_command(f"{cfg.checkpoint_dir}/best.pt", str(tmp_path / "five.onnx"), version="five")
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert metadata["labels"] == '["nailong", "emoji", "anime", "others", "long"]'
    classifier = Classifier(out, providers=["CPUExecutionProvider"])
    assert classifier.info.positive_index == 0 and len(classifier.info.labels) == 5


def test_frozen_backbone_steps_train_only_the_head_and_frozen_batchnorm_keeps_its_statistics(tmp_path, image_root):
    from trainer.model import build_initialised_model

    cfg = tiny_config(tmp_path, image_root, "freeze_backbone_steps=2", "freeze_batchnorm=true", "max_steps=2",
                      "eval_every=2", "model=tf_efficientnet_lite0")
    torch.manual_seed(cfg.seed)
    start = build_initialised_model(cfg, 2).state_dict()
    train(cfg)
    end = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)["model"]
    changed = {key for key in start if not torch.equal(start[key], end[key])}
    assert changed == {"classifier.weight", "classifier.bias"}
