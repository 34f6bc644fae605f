# Run from the repository root: PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/probe_lite0_lite2.py
# (needs runs/lite0-wild-ft/checkpoints/best.pt for the validation split; writes runs/probe-compare2.json).
"""Linear probes, ImageNet EfficientNet-Lite0 @224 vs Lite2 @260, on the same subsets of the issue-15 data:
a quarter of the training files (first frame), all validation files and the wild set (8 frames, any-frame)."""
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np, torch
from trainer.config import load_config
from trainer.data import load_records, wild_records, file_factors
from trainer.features import extract_features, fit_linear_head, onnx_features
from trainer.model import build_initialised_model, preprocess_spec
from trainer.metrics import per_file_probs, summarize
from trainer.thresholds import wild_threshold
from nailong_vision.decode import decode_frames
from nailong_vision.frame_rule import flat_frames
from nailong_vision.preprocess import normalize, resize_rgb

base = load_config("configs/lite0-wild.yaml")
ck = torch.load("runs/lite0-wild-ft/checkpoints/best.pt", map_location="cpu", weights_only=False)
val_set = set(ck["val_sources"])
records = load_records(base)
by_source = {r.source: r for r in records}
train = [r for r in records if r.source not in val_set and not any(r.source.endswith(n) for n in base.exclude)]
rng = np.random.default_rng(0)
train = [train[i] for i in sorted(rng.choice(len(train), len(train) // 4, replace=False))]
val = [by_source[s] for s in ck["val_sources"]]
wild = wild_records(base)
sizes = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite2": 260}
specs = {m: preprocess_spec(load_config("configs/lite0-wild.yaml", [f"model={m}", f"image_size={s}"])) for m, s in sizes.items()}
frames = {m: {"train": [], "val": [], "wild": []} for m in sizes}
owners = {"train": [], "val": [], "wild": []}
for part, recs, n in (("train", train, 1), ("val", val, 8), ("wild", wild, 8)):
    for k, r in enumerate(recs):
        fs = decode_frames(r.read(), max_frames=n, draft_size=260)
        owners[part] += [k] * len(fs)
        for m in sizes:
            frames[m][part] += [resize_rgb(f, specs[m].size, specs[m].resize) for f in fs]
print("decoded", {p: len(o) for p, o in owners.items()}, flush=True)
labels = ["nailong", "other"]
ytrain = np.array([labels.index(r.label) for r in train])
weights = file_factors(train, base)
for c in (0, 1):
    weights[ytrain == c] /= weights[ytrain == c].sum()
vt = np.array([r.label == "nailong" for r in val]); wo = np.array([r.label != "nailong" for r in wild])
vhard = np.array([r.tag == "hard" for r in val])
results = {}
for m, size in sizes.items():
    cfg = load_config("configs/lite0-wild.yaml", [f"model={m}", f"image_size={size}", "pretrained=true",
                                                  "pretrained_source=package", "init_checkpoint=null"])
    model = build_initialised_model(cfg, 2).eval()
    d = SimpleNamespace(spec=specs[m])  # what extract_features reads of the prepared data
    with tempfile.TemporaryDirectory() as tmp:
        fwd = onnx_features(model, size, Path(tmp))
        feats = {p: extract_features(model, np.stack(frames[m][p]), d, forward=fwd) for p in owners}
    for l2 in (1e-4, 1e-3):
        w, b = fit_linear_head(feats["train"], ytrain, weights, 2, l2)
        vp, wp = (per_file_probs((torch.from_numpy(feats[p]) @ w.T + b).softmax(1).numpy(), np.array(owners[p]), n, 0,
                                   flat=flat_frames(normalize(np.stack(frames[m][p]), specs[m])))[:, 0]
                  for p, n in (("val", len(val)), ("wild", len(wild))))
        m_ = summarize(np.stack([vp, 1 - vp], 1), (~vt).astype(int), labels, 0)
        t = wild_threshold(wp[wo], 0.005)
        s = np.sort(vp[vt])[::-1]; t95 = s[int(np.ceil(0.95 * len(s))) - 1]
        res = {"val_ap": m_["average_precision"], "wild_threshold": t,
               "val_recall_at_wild_threshold": float((vp[vt] >= t).mean()),
               "val_hard_fpr_at_wild_threshold": float((vp[vhard] >= t).mean()),
               "wild_fp_at_val_recall_0.95": int((wp[wo] >= t95).sum()),
               "val_fp_at_val_recall_0.95": int((vp[~vt] >= t95).sum())}
        results[f"{m} l2={l2}"] = res
        print(m, l2, json.dumps(res), flush=True)
results["subsets"] = {"train_files": len(train), "val_files": len(val), "wild_files": len(wild), "val_hard": int(vhard.sum())}
Path("runs/probe-compare2.json").write_text(json.dumps(results, indent=2))
