"""trainer refresh: learning the admins' corrections on a tiny base model, the gate, lineage, resume."""

import csv
import json

import numpy as np
import onnx
import pytest
import torch

from nailong_vision.classifier import Classifier
from nailong_vision.handoff import (
    CHECKPOINT_FILE,
    CORRECTIONS_V1_COLUMNS,
    GATE_FILE,
    GATE_MARKDOWN_FILE,
    MODEL_FILE,
    RECENT_IMAGES,
    RECENT_INDEX,
    AgreementCheck,
    CorrectionsCheck,
    GateChecks,
    GateReport,
)
from nailong_vision.preprocess import PreprocessSpec
from tests.trainer.conftest import encode, nailong_like
from tests.trainer.refresh_kit import (
    BASE_VERSION,
    THRESHOLD,
    build_base,
    lookalikes,
    ordinary_images,
    write_corrections,
    write_recent,
)
from trainer import refresh as refresh_module
from trainer.checkpoint import Checkpoint
from trainer.cli import main
from trainer.config import load_config
from trainer.export import sha256_file
from trainer.feedback import FeedbackError, read_corrections
from trainer.gate import check_agreement, reasons_for
from trainer.model import build_model
from trainer.refresh import (
    RefreshInterrupted,
    RefreshSettings,
    correction_items,
    next_version,
    plan_steps,
    refresh,
)
from trainer.scoring import load_scorer

STEPS = 25
# A budget that never binds: the step count is then max_steps, the same in every run.
FIXED = ["--budget-seconds", "100000", "--max-steps", str(STEPS), "--threads", "2"]


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("refresh-base")
    return build_base(root / "model", root / "work")


@pytest.fixture(scope="session")
def bot_data(tmp_path_factory):
    """Four corrected look-alikes, twenty more of the family held out, sixty ordinary recent images and
    one corrected image that also sits in the recent store (it must not count as uncorrected)."""
    root = tmp_path_factory.mktemp("bot")
    family = lookalikes(24, seed=7)
    write_corrections(root / "feedback", [(data, "other") for data in family[:4]])
    write_recent(root / "recent", ordinary_images(60, seed=8) + family[:1])
    return root, family[4:]


@pytest.fixture(scope="session")
def refreshed(base, bot_data, tmp_path_factory):
    root, _ = bot_data
    out = tmp_path_factory.mktemp("refreshed") / "out"
    code = main(["refresh", "--base", str(base), "--feedback", str(root / "feedback"), "--recent", str(root / "recent"),
                 "--out", str(out), *FIXED])
    return code, out


def acted_on(model_dir, images):
    scorer = load_scorer(model_dir / MODEL_FILE)
    return np.array([scorer.score_bytes(data)[scorer.positive_index] >= scorer.threshold for data in images])


def test_refresh_learns_the_corrected_family_and_passes_the_gate(base, bot_data, refreshed):
    code, out = refreshed
    _, held_out = bot_data
    report = json.loads((out / GATE_FILE).read_text(encoding="utf-8"))
    assert code == 0
    assert report["passed"] and report["reasons"] == []
    assert report["checks"]["corrections"] == {"passed": True, "agreed": 4, "total": 4, "wrong": []}
    # The corrected image in the recent store is not an "uncorrected replay image".
    assert report["checks"]["agreement"]["images"] == 60
    assert report["checks"]["agreement"]["rate"] >= 0.98
    assert report["checks"]["validation"] is None
    assert report["steps"] == STEPS and report["seconds"] > 0
    assert GateReport.from_json((out / GATE_FILE).read_text(encoding="utf-8")).passed  # what the bot reads
    assert report["version"] == f"{BASE_VERSION}+r1" and report["base_version"] == BASE_VERSION
    before, after = acted_on(base, held_out).mean(), acted_on(out, held_out).mean()
    assert before >= 0.75
    assert after <= before / 2
    assert (out / GATE_MARKDOWN_FILE).read_text(encoding="utf-8").startswith("# 模型更新检查 / Refresh gate")
    assert not (out / ".refresh" / "progress.pt").exists()


def test_the_images_that_changed_are_saved_beside_the_candidate(refreshed):
    _, out = refreshed
    changed = json.loads((out / GATE_FILE).read_text(encoding="utf-8"))["changed"]
    corrections = [c for c in changed if c["source"] == "correction"]
    assert corrections  # the tiny base flagged the corrected look-alikes
    for entry in changed:
        assert (out / entry["file"]).is_file()
        assert (entry["before"] >= THRESHOLD) != (entry["after"] >= THRESHOLD)


def test_export_carries_the_lineage_and_a_checkpoint_for_the_next_refresh(refreshed):
    _, out = refreshed
    metadata = {p.key: p.value for p in onnx.load(str(out / MODEL_FILE)).metadata_props}
    lineage = json.loads(metadata["lineage"])
    assert metadata["version"] == f"{BASE_VERSION}+r1"
    assert lineage["base_version"] == BASE_VERSION and lineage["parent_version"] == BASE_VERSION
    assert lineage["refresh"] == 1 and lineage["corrections"] == 4 and lineage["steps"] == STEPS
    assert lineage["gate"]["passed"] and lineage["gate"]["corrections"] == "4/4"
    assert float(metadata["threshold"]) == pytest.approx(THRESHOLD)  # the base model's threshold is kept
    assert json.loads(metadata["metrics"]) == {}  # not validated (no training folders): no numbers of its own
    assert float(metadata["review_floor"]) == pytest.approx(THRESHOLD / 4, abs=1e-4)  # and its review floor
    assert (out / "nailong.onnx.sha256").read_text() == sha256_file(out / MODEL_FILE) + "\n"
    info = Classifier(out / MODEL_FILE, providers=["CPUExecutionProvider"]).info  # loads as the plugin loads it
    assert info.version == f"{BASE_VERSION}+r1"
    checkpoint = Checkpoint.load(out / CHECKPOINT_FILE)
    assert checkpoint.lineage == lineage and checkpoint.resume == {}


def test_an_impossible_correction_fails_the_gate_with_exit_code_3(base, bot_data, tmp_path):
    """The same picture corrected both ways (two encodings): no model can decide both the admins' way."""
    root, _ = bot_data
    picture = nailong_like(np.random.default_rng(11))
    feedback = tmp_path / "feedback"
    write_corrections(feedback, [(encode(picture), "nailong"), (encode(picture, "BMP"), "other")])
    out = tmp_path / "out"
    code = main(["refresh", "--base", str(base), "--feedback", str(feedback), "--recent", str(root / "recent"),
                 "--out", str(out), *FIXED[:3], "5"])
    report = json.loads((out / GATE_FILE).read_text(encoding="utf-8"))
    assert code == 3
    assert not report["passed"]
    assert report["checks"]["corrections"]["agreed"] == 1 and report["checks"]["corrections"]["total"] == 2
    assert "1 of 2 corrected images are still decided against the admins" in report["reasons"][0]
    assert (out / MODEL_FILE).is_file()  # the candidate stays for inspection


def test_agreement_below_98_percent_fails_with_a_reason():
    before = np.array([0.9] * 50 + [0.1] * 50)
    after = before.copy()
    after[:3] = 0.2  # three of a hundred decided the other way
    agreement = check_agreement(before, after, 0.5)
    assert agreement == AgreementCheck(passed=False, rate=0.97, images=100, target=0.98)
    checks = GateChecks(CorrectionsCheck(passed=True, agreed=1, total=1), agreement, validation=None)
    assert reasons_for(checks) == ["与当前模型的一致率 97.0% 低于 98% / agrees with the current model on 97.0% of "
                                   "100 replay images (needs 98%)"]


def test_an_interrupted_refresh_resumes_to_the_same_model(base, bot_data, refreshed, tmp_path, monkeypatch):
    root, _ = bot_data
    out = tmp_path / "out"
    settings = RefreshSettings(budget_seconds=100000, max_steps=STEPS, threads=2)
    real_step = refresh_module.train_step

    def interrupted_at_ten(model, base_model, optimizer, make_batch, progress, *rest):
        if progress.step == 10:
            raise KeyboardInterrupt
        real_step(model, base_model, optimizer, make_batch, progress, *rest)

    monkeypatch.setattr(refresh_module, "train_step", interrupted_at_ten)
    with pytest.raises(RefreshInterrupted, match="resume"):
        refresh(base, root / "feedback", out, root / "recent", settings=settings)
    assert (out / ".refresh" / "progress.pt").is_file() and not (out / MODEL_FILE).exists()
    monkeypatch.setattr(refresh_module, "train_step", real_step)
    report = refresh(base, root / "feedback", out, root / "recent", settings=settings)
    assert report.steps == STEPS
    resumed, uninterrupted = Checkpoint.load(out / CHECKPOINT_FILE), Checkpoint.load(refreshed[1] / CHECKPOINT_FILE)
    for name, tensor in uninterrupted.weights.items():
        assert torch.allclose(resumed.weights[name], tensor, atol=1e-6), name


def test_bad_input_exits_with_code_2(base, bot_data, tmp_path):
    root, _ = bot_data
    picture = encode(nailong_like(np.random.default_rng(12)))
    undone = tmp_path / "undone"
    write_corrections(undone, [(picture, "other")], undo=[picture])
    common = ["--recent", str(root / "recent"), "--out", str(tmp_path / "out")]
    assert main(["refresh", "--base", str(base), "--feedback", str(undone), *common]) == 2  # nothing to learn
    assert main(["refresh", "--base", str(tmp_path), "--feedback", str(root / "feedback"), *common]) == 2  # no model
    assert main(["refresh", "--base", str(base), "--feedback", str(root / "feedback"),
                 "--out", str(tmp_path / "out")]) == 2  # nothing to replay
    assert not (tmp_path / "out").exists()


def test_a_cascade_base_is_refused_instead_of_refreshed_into_its_first_model_alone(base, bot_data, tmp_path):
    """A refresh retrains the first model only and keeps the base's threshold, which a cascade set on its mixed
    scores: the result would decide on the first model's scores at the cascade's threshold. It is refused."""
    cascade_base = tmp_path / "cascade"
    cascade_base.mkdir()
    for name in (MODEL_FILE, MODEL_FILE + ".sha256", CHECKPOINT_FILE):
        (cascade_base / name).write_bytes((base / name).read_bytes())
    (cascade_base / "second.onnx").write_bytes((base / MODEL_FILE).read_bytes())
    (cascade_base / "second.onnx.sha256").write_text(sha256_file(cascade_base / "second.onnx") + "\n")
    first = cascade_base / MODEL_FILE
    model = onnx.load(str(first))
    model.metadata_props.add(key="cascade", value=json.dumps({"model": "second.onnx", "band": [0.1, 0.99]}))
    onnx.save(model, str(first))
    (cascade_base / (MODEL_FILE + ".sha256")).write_text(sha256_file(first) + "\n")
    assert Classifier(first).second is not None  # a working cascade, not a broken model
    root, _ = bot_data
    out = tmp_path / "out"
    assert main(["refresh", "--base", str(cascade_base), "--feedback", str(root / "feedback"),
                 "--recent", str(root / "recent"), "--out", str(out), *FIXED]) == 2
    assert not out.exists()


def test_the_scores_the_bot_recorded_with_the_base_model_are_not_computed_again(base, tmp_path, monkeypatch):
    images = ordinary_images(4, seed=9)
    write_corrections(tmp_path / "feedback", [(lookalikes(1, seed=2)[0], "other")])
    # Two scored by the base model, one by another model, one decided by a correction (no score).
    write_recent(tmp_path / "recent", images[:2], [0.25, 0.75], model_version=BASE_VERSION)
    write_recent(tmp_path / "older", images[2:], [0.5, None], model_version="2025.01.01.1")
    for entry in (tmp_path / "older" / RECENT_IMAGES).iterdir():
        entry.rename(tmp_path / "recent" / RECENT_IMAGES / entry.name)
    with (tmp_path / "recent" / RECENT_INDEX).open("a", encoding="utf-8") as index:
        index.write((tmp_path / "older" / RECENT_INDEX).read_text(encoding="utf-8"))
    inputs = refresh_module.read_inputs(base, tmp_path / "feedback", tmp_path / "recent", None)
    assert inputs.recent.base_scores[:2].tolist() == [0.25, 0.75] and np.isnan(inputs.recent.base_scores[2:]).all()
    scored = []
    real = refresh_module.score_images
    monkeypatch.setattr(refresh_module, "score_images", lambda model, images, *rest: scored.append(len(images))
                        or real(model, images, *rest))
    before = refresh_module.score_all(inputs.base.build_model(), inputs, torch.device("cpu"), base=True)
    assert before["recent"][:2].tolist() == [0.25, 0.75]
    assert scored == [1, 2]  # the corrected image, then only the two recent images without a base-model score


def test_corrections_are_read_as_the_plugin_replays_its_log(tmp_path):
    images = lookalikes(3, seed=1)
    ids = write_corrections(tmp_path, [(images[0], "other"), (images[1], "nailong"), (images[2], "other")],
                            undo=[images[1]])
    corrections = read_corrections(tmp_path)
    assert [c.id for c in corrections] == [ids[0], ids[2]]
    assert all(c.label == "other" and c.path.is_file() and ".retired" not in str(c.path) for c in corrections)


def test_only_corrections_that_apply_everywhere_are_learned(tmp_path):
    images = lookalikes(3, seed=3)
    ids = write_corrections(tmp_path, [(images[0], "other"), (images[1], "nailong"), (images[2], "other")],
                            group_only=[images[1], images[2]])
    assert [c.id for c in read_corrections(tmp_path)] == [ids[0]]


def test_a_log_from_before_scopes_is_refused_with_a_clear_message(tmp_path):
    write_corrections(tmp_path, [(lookalikes(1, seed=4)[0], "other")])
    with (tmp_path / "corrections.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    old_columns = CORRECTIONS_V1_COLUMNS
    with (tmp_path / "corrections.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(FeedbackError, match="start the bot once"):
        read_corrections(tmp_path)


def test_the_budget_decides_the_steps():
    # 600 s budget, 100 s spent reading and scoring, 60 s kept for the gate and export, 4 s a step.
    assert plan_steps(600, 100, 4.0, 60, max_steps=1000) == 110
    assert plan_steps(600, 100, 4.0, 60, max_steps=50) == 50
    # Reading and scoring ate the budget (a busy box): training still gets half of it.
    assert plan_steps(600, 590, 4.0, 60, max_steps=1000) == 75
    assert plan_steps(600, 0, 1000.0, 60, max_steps=1000) == 1  # never none
    assert plan_steps(60, 5, 0.05, 10, max_steps=100000) == 900


def test_every_correction_gets_its_share_of_views_in_every_step():
    # Five labels, eight views a step: each label in every step, all equally often over five steps (drawn at
    # random, one label went unseen in some of the first steps).
    steps = [correction_items(5, 8, step, seed=0) for step in range(5)]
    assert all(set(items) == set(range(5)) for items in steps)
    assert np.bincount(np.concatenate(steps), minlength=5).tolist() == [8] * 5
    assert steps == [correction_items(5, 8, step, seed=0) for step in range(5)]  # a resumed run: the same views
    # More labels than views: each comes round in turn.
    assert sorted(correction_items(20, 8, 0, seed=0) + correction_items(20, 8, 1, seed=0)
                  + correction_items(20, 8, 2, seed=0)[:4]) == list(range(20))


def test_versions_count_refreshes():
    assert next_version("2026.11.26.3") == "2026.11.26.3+r1"
    assert next_version("2026.11.26.3+r1") == "2026.11.26.3+r2"


def test_checkpoint_round_trip(tmp_path):
    cfg = load_config(None, ["model=test_efficientnet", "image_size=32"])
    model = build_model(cfg.model, 2)
    original = Checkpoint(weights=model.state_dict(), config=cfg, labels=["nailong", "other"],
                          spec=PreprocessSpec(size=32, frames=4), data_summary={"images": 3}, state={"step": 7},
                          lineage={"refresh": 1}, resume={"optimizer": {"state": {}}}, extra={"frozen_features": 1})
    original.save(tmp_path / "full.pt")
    original.save(tmp_path / "weights.pt", resume=False)
    loaded, bare = Checkpoint.load(tmp_path / "full.pt"), Checkpoint.load(tmp_path / "weights.pt")
    assert loaded.config == cfg and loaded.spec == original.spec and loaded.labels == original.labels
    assert loaded.step == 7 and loaded.lineage == {"refresh": 1} and loaded.extra == {"frozen_features": 1}
    assert loaded.resume == {"optimizer": {"state": {}}} and bare.resume == {}
    assert loaded.positive_index == 0
    rebuilt = loaded.build_model()
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not rebuilt.training


def test_refresh_uses_the_optimiser_and_schedule_of_train():
    """The backbone learns at backbone_lr and the head at head_lr, warmed up, then decayed by cosine to a
    tenth at the last step: train's factories (build_optimizer, get_lr) with the refresh's settings."""
    from trainer.loop import get_lr, set_learning_rate

    settings = RefreshSettings(backbone_lr=3e-5, head_lr=1e-4, warmup_steps=5)
    model = build_model("convnext_atto", 2)
    optimizer = refresh_module.build_optimizer(model, refresh_module.optimisation(settings, 50))
    head = {id(p) for p in model.get_classifier().parameters()}
    for step, factor in ((0, 1 / 6), (4, 5 / 6), (5, 1.0), (50, 0.1), (80, 0.1)):
        set_learning_rate(optimizer, get_lr(step, refresh_module.optimisation(settings, 50)))
        rates = {(id(p) in head): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        assert rates[True] == pytest.approx(1e-4 * factor)
        assert rates[False] == pytest.approx(3e-5 * factor)
    assert all(group["weight_decay"] == 0.0 for group in optimizer.param_groups)
