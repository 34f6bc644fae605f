"""The plugin's side of a refresh: the trainer subprocess (a stand-in with the same arguments, exit codes
and files: tests/plugin/fake_trainer), the checks before a swap, the hot swap, rollback, the model kept
across a restart, automatic mode, and the superuser commands. The end-to-end test runs the real trainer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest
from nonebot.adapters.onebot.v11 import Adapter, Bot
from nonebug import App

from nailong_bot import refresh
from nailong_bot.cache import versioned_key
from nailong_bot.corrections import Corrections
from nailong_bot.pipeline import decide_bytes
from nailong_vision.handoff import CHECKPOINT_FILE, GATE_FILE, GATE_MARKDOWN_FILE, MODEL_FILE
from nailong_testkit import (
    SUPERUSER, YELLOW, build_tiny_model, group_event, live_members, patterned, text_segment, write_checksum,
)

HERE = Path(__file__).parent
API_TOKEN = "refresh-api-token-0123456789"


@pytest.fixture
def base_model(tmp_path: Path) -> Path:
    """The operator's model, with a checkpoint beside it (what a refresh starts from)."""
    model = build_tiny_model(tmp_path / "base" / MODEL_FILE)
    write_checksum(model)
    (tmp_path / "base" / CHECKPOINT_FILE).write_bytes(b"checkpoint")
    return model


@pytest.fixture
def fake_trainer(monkeypatch):
    """Refreshes run the stand-in; returns a function that sets what it does next."""
    monkeypatch.setattr(refresh, "trainer_module", lambda: "fake_trainer")
    monkeypatch.setenv("PYTHONPATH", str(HERE))

    def plan(**what: object) -> None:
        monkeypatch.setenv("FAKE_TRAINER", json.dumps(what))

    plan()
    return plan


@pytest.fixture
async def learner(start_guard, base_model, fake_trainer, tmp_path):
    return await start_guard(tmp_path / "data", nailong_model_path=base_model, nailong_trainer_python=Path(sys.executable))


def correct(corrections: Corrections, count: int, label: str = "other") -> None:
    for seed in range(count):
        corrections.add(
            patterned(YELLOW, seed=100 + seed), label=label, group_id=1, user_id=5, score=0.9, model_version="0.0.1",
            everywhere=True,
        )


async def decide(runtime, data: bytes):
    return await decide_bytes(data, runtime, runtime.cache.generation)


async def test_a_passing_refresh_is_swapped_in_without_a_restart(learner, tmp_path) -> None:
    correct(learner.corrections, 2)
    image = patterned(YELLOW, seed=7)  # of the corrected family, not itself corrected
    before = await decide(learner, image)
    assert (before.source, before.model_version) == ("model", "0.0.1") and before.score > 0.9
    decider = learner.decider

    record = await learner.refresher.start("test")

    assert record.outcome == "passed", record.message
    assert learner.decider is decider  # the same runtime: no restart
    assert learner.model_version == "0.0.1+r1"
    after = await decide(learner, image)
    # Decided by the new model, not answered from the cache of the old one.
    assert (after.source, after.model_version) == ("model", "0.0.1+r1") and after.score < 0.1
    assert learner.store.defaults.threshold == learner.classifier.info.threshold
    kept = tmp_path / "data" / "models" / "0.0.1+r1"
    assert {p.name for p in kept.iterdir()} >= {MODEL_FILE, f"{MODEL_FILE}.sha256", CHECKPOINT_FILE, GATE_FILE}
    assert learner.classifier.info.path == kept / MODEL_FILE
    call = json.loads((kept / "fake_call.json").read_text())
    # Ten steps below the bot itself, whatever niceness the tests run at; one thread.
    assert call["niceness"] == min(os.nice(0) + 10, 19) and call["omp_threads"] == "1"  # 19 is the lowest priority
    assert {MODEL_FILE, CHECKPOINT_FILE} <= set(call["base_files"])
    assert call["argv"][call["argv"].index("--feedback") + 1] == str(tmp_path / "data" / "feedback")
    assert call["argv"][call["argv"].index("--recent") + 1] == str(tmp_path / "data" / "recent")
    saved = json.loads((tmp_path / "data" / "models" / "last_refresh.json").read_text())
    assert saved["outcome"] == "passed" and saved["gate"]["checks"]["corrections"]["agreed"] == 5


async def test_the_refreshed_model_survives_a_restart_and_rollback_restores_the_old(
    learner, start_guard, base_model, tmp_path
) -> None:
    image = patterned(YELLOW, seed=8)
    await decide(learner, image)
    assert (await learner.refresher.start("test")).outcome == "passed"

    restarted = await start_guard(tmp_path / "data", nailong_model_path=base_model)
    assert restarted.model_version == "0.0.1+r1"
    assert restarted.refresher.last is not None and restarted.refresher.last.outcome == "passed"

    left, now = await restarted.models.rollback()
    assert (left.version, now.version) == ("0.0.1+r1", "0.0.1")
    assert (await decide(restarted, image)).score > 0.9
    again = await start_guard(tmp_path / "data", nailong_model_path=base_model)
    assert again.model_version == "0.0.1"
    with pytest.raises(refresh.ModelError, match="no earlier model"):
        await again.models.rollback()


async def test_a_version_built_again_after_a_rollback_is_not_answered_from_the_cache(learner, fake_trainer) -> None:
    image = patterned(YELLOW, seed=10)
    assert (await learner.refresher.start("test")).outcome == "passed"
    assert (await decide(learner, image)).score < 0.1  # cached under 0.0.1+r1
    await learner.models.rollback()
    fake_trainer(yellow=True)  # the same base refreshed again: the same version, another model
    assert (await learner.refresher.start("test")).outcome == "passed"
    again = await decide(learner, image)
    assert (again.source, again.model_version) == ("model", "0.0.1+r1") and again.score > 0.9


async def test_rollback_reaches_the_last_refreshed_models_and_always_the_base(learner, fake_trainer, tmp_path) -> None:
    for number in range(1, 6):
        fake_trainer(version=f"0.0.1+r{number}")
        assert (await learner.refresher.start("test")).outcome == "passed"
    versions = []
    while learner.models.can_roll_back():
        versions.append((await learner.models.rollback())[1].version)
    assert versions == ["0.0.1+r4", "0.0.1+r3", "0.0.1+r2", "0.0.1"]
    kept = sorted(p.name for p in (tmp_path / "data" / "models").iterdir() if (p / MODEL_FILE).is_file())
    assert kept == ["0.0.1+r2", "0.0.1+r3", "0.0.1+r4", "0.0.1+r5"]  # older ones pruned from disk


async def test_a_new_base_model_replaces_the_refreshed_ones(learner, start_guard, tmp_path) -> None:
    assert (await learner.refresher.start("test")).outcome == "passed"
    other = build_tiny_model(tmp_path / "other" / MODEL_FILE, version="0.0.2")
    restarted = await start_guard(tmp_path / "data", nailong_model_path=other)
    assert restarted.model_version == "0.0.2"  # the operator's new model, not one refreshed from the old


async def test_a_failing_gate_keeps_the_model_and_says_why(learner, fake_trainer, tmp_path) -> None:
    fake_trainer(exit=3)
    record = await learner.refresher.start("test")
    assert record.outcome == "failed"
    assert "3/5 decided their way" in record.message
    assert learner.model_version == "0.0.1"
    assert not (tmp_path / "data" / "models" / "current.json").exists()
    assert record.gate is not None and (Path(record.folder) / GATE_MARKDOWN_FILE).exists()  # the report is kept


@pytest.mark.parametrize(
    ("plan", "said"),
    [
        ({"exit": 1}, "something broke"),
        ({"exit": 2}, "bad input"),
        ({"sha256": "0" * 64}, "checksum mismatch"),
        ({"labels": ["nailong", "emoji", "anime", "others", "long"]}, "other labels"),
    ],
    ids=["crash", "bad-input", "checksum", "labels"],
)
async def test_a_broken_candidate_is_not_swapped_in(learner, fake_trainer, plan, said) -> None:
    fake_trainer(**plan)
    record = await learner.refresher.start("test")
    assert record.outcome == "error"
    assert said in record.message
    assert learner.model_version == "0.0.1"
    assert not learner.models.can_roll_back()


async def test_images_in_flight_finish_on_the_model_they_started_with(learner, tmp_path, monkeypatch) -> None:
    entered, release = threading.Event(), threading.Event()
    old_model = learner.decider.classifier
    score_on_old_model = old_model.image_score

    def hold(frames: list) -> float:
        entered.set()
        release.wait(10)
        return score_on_old_model(frames)

    monkeypatch.setattr(old_model, "image_score", hold)
    in_flight = asyncio.ensure_future(learner.decider.decide(patterned(YELLOW, seed=9)))
    await asyncio.to_thread(entered.wait, 10)
    assert (await learner.refresher.start("test")).outcome == "passed"
    release.set()
    decision = await in_flight
    assert (decision.model_version, decision.source) == ("0.0.1", "model") and decision.score > 0.9
    assert (await learner.decider.decide(patterned(YELLOW, seed=9))).model_version == "0.0.1+r1"


async def test_the_guard_decides_while_a_refresh_runs(learner, fake_trainer) -> None:
    fake_trainer(sleep=3)
    task = learner.refresher.start("test")
    decisions = [await decide(learner, patterned(YELLOW, seed=seed)) for seed in range(20, 25)]
    assert not task.done()
    assert all(d.source == "model" for d in decisions)
    assert learner.refresher.start("again") is task  # one refresh at a time
    assert (await task).outcome == "passed"


async def test_automatic_mode_waits_for_enough_new_corrections_and_an_hour(start_guard, base_model, fake_trainer, tmp_path) -> None:
    runtime = await start_guard(
        tmp_path / "data", nailong_model_path=base_model, nailong_trainer_python=Path(sys.executable),
        nailong_auto_refresh=True, nailong_auto_refresh_corrections=3,
    )  # fmt: skip
    correct(runtime.corrections, 2)
    assert runtime.refresher.maybe_start_auto() is None
    correct(runtime.corrections, 3)
    task = runtime.refresher.maybe_start_auto()
    assert task is not None and (await task).trigger == "auto"
    assert runtime.model_version == "0.0.1+r1"
    # Within the hour nothing starts, however many new corrections come in.
    await asyncio.sleep(1.1)  # corrections' times are in whole seconds
    correct(runtime.corrections, 3, label="nailong")
    assert runtime.refresher.maybe_start_auto() is None
    # Past the interval, only corrections newer than the last refresh count.
    refresher = runtime.refresher
    refresher.config = refresher.config.model_copy(update={"nailong_auto_refresh_interval_hours": 0.5 / 3600})
    assert refresher.maybe_start_auto() is not None  # those 3
    await refresher.running
    await asyncio.sleep(0.6)
    assert refresher.maybe_start_auto() is None  # nothing new since


async def test_automatic_mode_is_off_by_default(learner) -> None:
    correct(learner.corrections, 6)
    assert learner.refresher.maybe_start_auto() is None


def test_the_trainer_is_the_checkouts_own_or_the_installed_one(monkeypatch) -> None:
    assert refresh.trainer_module() == "trainer"  # these tests run in a checkout
    monkeypatch.setattr(refresh, "_CHECKOUT", Path("/nonexistent/site-packages"))
    assert refresh.trainer_module() == "nailong_trainer"  # as the wheel installs it


def test_trainer_python_defaults_to_the_bots_own_when_torch_is_there(monkeypatch) -> None:
    from nailong_bot.config import Config

    assert refresh.trainer_python(Config(nailong_trainer_python="/opt/train/bin/python")) == "/opt/train/bin/python"
    monkeypatch.setattr(refresh.importlib.util, "find_spec", lambda name: object() if name == "torch" else None)
    assert refresh.trainer_python(Config()) == sys.executable
    monkeypatch.setattr(refresh.importlib.util, "find_spec", lambda name: None)
    assert refresh.trainer_python(Config()) is None
    assert "torch" not in sys.modules or "nailong_bot.refresh" in sys.modules  # never imported by the plugin


# --- the superuser commands ------------------------------------------------------------------------


async def chat(app: App, text: str, *, user_id: int = SUPERUSER, role: str = "member") -> list[str]:
    """Every message the bot sends for one command, in order."""
    from nailong_bot.commands import nailong_command

    answers: list[str] = []
    async with app.test_matcher(nailong_command) as ctx:
        bot = ctx.create_bot(base=Bot, adapter=ctx.create_adapter(base=Adapter), self_id="42")
        ctx.receive_event(bot, group_event([text_segment(text)], role=role, user_id=user_id, group_id=1))

        async def capture(event, message, **kwargs):
            answers.append(str(message))

        bot.send = capture  # type: ignore[method-assign]
        ctx.should_finished(nailong_command)
    return answers


async def test_after_a_failed_refresh_and_a_rollback_the_model_named_is_the_one_in_use(
    app: App, learner, fake_trainer
) -> None:
    correct(learner.corrections, 2)
    assert (await learner.refresher.start("test")).outcome == "passed"
    fake_trainer(exit=3)  # the next candidate fails its gate: r1 stays
    correct(learner.corrections, 1)
    assert (await learner.refresher.start("test")).outcome == "failed"
    (rolled,) = await chat(app, "/nailong rollback")
    assert rolled == "Rolled back: 0.0.1+r1 → 0.0.1"
    (model,) = await chat(app, "/奶龙 模型")
    assert model.startswith("当前模型：tiny-test 0.0.1（")
    assert "此后已回退，现在使用 0.0.1" in model  # not only "kept 0.0.1+r1" from the failed refresh


async def test_refresh_model_and_rollback_commands(app: App, learner) -> None:
    correct(learner.corrections, 2)
    (model,) = await chat(app, "/nailong model")
    assert "0.0.1" in model and "Lineage: the base model" in model
    assert "Corrections since it was made: 2" in model

    started, finished = await chat(app, "/奶龙 更新")
    assert started.startswith("开始更新模型")
    assert finished.startswith("更新结束：") and "（qq:10000 (tester)）已通过检查并启用" in finished
    assert "新模型已启用：0.0.1 → 0.0.1+r1" in finished
    assert "✓ 纠错判对：5/5" in finished
    assert "与旧模型一致：99.0%" in finished
    assert " / " not in finished
    assert learner.model_version == "0.0.1+r1"

    (model,) = await chat(app, "/奶龙 模型")
    assert "0.0.1+r1" in model and "由 0.0.1 用 2 条纠错更新（基础模型 0.0.1 的第 1 次更新）" in model
    assert "/奶龙 回退" in model

    (rolled,) = await chat(app, "/nailong rollback")
    assert rolled == "Rolled back: 0.0.1+r1 → 0.0.1"
    assert learner.model_version == "0.0.1"
    # The last refresh swapped in r1; the model named as in use is the one rolled back to.
    (model,) = await chat(app, "/奶龙 模型")
    assert model.startswith("当前模型：tiny-test 0.0.1（")
    assert "此后已回退，现在使用 0.0.1" in model
    (nothing,) = await chat(app, "/奶龙 回退")
    assert nothing == "没有更早的模型可以回退。"
    # Each change from chat is one audit record: the refresh's start and outcome, the rollback.
    audit = [(e["operator"], e["client"], e["action"]) for e in reversed(learner.audit.latest(5))]
    assert audit == [
        ("qq:10000 (tester)", "group:1", "refresh-started"),
        ("qq:10000 (tester)", "group:1", "refresh-ended"),
        ("qq:10000 (tester)", "group:1", "rollback"),
    ]


async def test_a_failing_gate_is_reported_in_the_chat(app: App, learner, fake_trainer) -> None:
    fake_trainer(exit=3)
    _, finished = await chat(app, "/nailong refresh")
    # Which check failed is said once, in the reader's language; the trainer's own reasons are for the log.
    assert "gate failed, model kept" in finished and "(the failed checks are marked ✗)" in finished
    assert "3/5 decided their way" not in finished
    assert "✗ corrections decided their way: 3/5" in finished
    assert learner.audit.latest(1)[0]["after"]["outcome"] == "failed"


async def test_refresh_without_the_trainer_says_how_to_install_it(app: App, learner, monkeypatch) -> None:
    monkeypatch.setattr(refresh, "trainer_python", lambda config: None)
    (answer,) = await chat(app, "/nailong refresh")
    assert 'pip install "nailong-bot[train]"' in answer
    assert learner.refresher.running is None


async def test_refresh_without_a_checkpoint_says_so(app: App, learner, base_model) -> None:
    base_model.with_suffix(".pt").unlink()
    (answer,) = await chat(app, "/nailong refresh")
    # No server path in a group: the console says where the checkpoint goes.
    assert "no checkpoint" in answer and "cannot be refreshed" in answer and "/" not in answer


@pytest.mark.parametrize("text", ["/nailong model", "/nailong refresh", "/nailong rollback", "/奶龙 更新"])
async def test_model_commands_are_for_superusers(app: App, learner, text: str) -> None:
    (answer,) = await chat(app, text, user_id=5, role="admin")
    assert answer.startswith("只有超级用户可以使用这个命令。" if "奶龙" in text else "Only superusers can use this.")
    assert learner.refresher.running is None


async def test_status_api_shows_the_version_in_use(learner) -> None:
    import httpx
    from fastapi import FastAPI

    from nailong_bot.web import mount

    app = FastAPI()
    mount(app, API_TOKEN)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        assert (await client.get("/nailong/api/status", headers=headers)).json()["model"]["version"] == "0.0.1"
        await learner.refresher.start("test")
        status = (await client.get("/nailong/api/status", headers=headers)).json()
    assert status["model"]["version"] == "0.0.1+r1"
    assert status["model"]["lineage"]["base_version"] == "0.0.1"
    assert status["refresh"]["last"]["outcome"] == "passed"


def test_cache_keys_carry_the_model_version() -> None:
    assert versioned_key("1+r1", "abc.jpg") != versioned_key("1", "abc.jpg")


# --- the console -----------------------------------------------------------------------------------


ADMIN_TOKEN = "refresh-admin-token-9876543210"


@pytest.fixture
async def console(learner):
    import httpx
    from fastapi import FastAPI

    from nailong_bot.web import mount

    app = FastAPI()
    mount(app, API_TOKEN, ADMIN_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot") as client:
        yield client


async def sign_in(console, name: str = "") -> str:
    """Sign in to the console; the page's form token."""
    await console.post("/nailong/login", data={"token": ADMIN_TOKEN, "name": name})
    page = (await console.get("/nailong/")).text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)


async def test_console_shows_the_lineage_and_gate_and_its_buttons_need_the_form_token(console, learner) -> None:
    assert (await console.post("/nailong/refresh", data={"csrf": "x"})).status_code == 401  # not signed in
    csrf = await sign_in(console, "ops")
    page = (await console.get("/nailong/")).text
    assert '<section id="refresh">' in page and "<dd>基础模型</dd>" in page
    assert 'action="/nailong/refresh"' in page and f'name="csrf" value="{csrf}"' in page
    assert "回退到上一个模型</button>" in page and 'class="quiet" disabled>' in page  # nothing to go back to

    for stale in ({}, {"csrf": "stale"}):
        assert (await console.post("/nailong/refresh", data=stale)).status_code == 403
        assert (await console.post("/nailong/rollback", data=stale)).status_code == 403
    assert learner.refresher.running is None

    started = await console.post("/nailong/refresh", data={"csrf": csrf})
    assert started.headers["Location"] == "/nailong/?notice=refresh-started#refresh"
    assert learner.refresher.running is not None and (await learner.refresher.running).outcome == "passed"
    page = (await console.get("/nailong/")).text
    assert "0.0.1+r1" in page and "由 0.0.1 用" in page
    assert "<li>✓ 纠错判对：5/5</li>" in page
    assert "判断改变的图片：0" in page

    rolled = await console.post("/nailong/rollback", data={"csrf": csrf})
    assert rolled.headers["Location"] == "/nailong/?notice=rolled-back#refresh"
    assert learner.model_version == "0.0.1"
    failed = await console.post("/nailong/rollback", data={"csrf": csrf})
    assert failed.headers["Location"] == "/nailong/?notice=rollback-failed#refresh"
    page = (await console.get("/nailong/")).text
    assert "此后已回退，现在使用 0.0.1" in page
    audit = [(e["operator"], e["action"], e["before"], e["after"]) for e in learner.audit.latest(5)]
    assert audit == [
        ("web:ops", "rollback", {"model": "0.0.1+r1"}, {"model": "0.0.1"}),
        ("web:ops", "refresh-ended", {"model": "0.0.1"}, {"outcome": "passed", "model": "0.0.1+r1", "candidate": "0.0.1+r1"}),
        ("web:ops", "refresh-started", {"model": "0.0.1"}, None),
    ]


async def test_console_says_why_a_refresh_cannot_run(console, learner, monkeypatch) -> None:
    monkeypatch.setattr(refresh, "trainer_python", lambda config: None)
    csrf = await sign_in(console)
    page = (await console.get("/nailong/")).text
    assert "nailong-bot[train]" in page and "开始更新</button>" in page and 'type="submit" disabled>' in page
    answer = await console.post("/nailong/refresh", data={"csrf": csrf})
    assert answer.headers["Location"] == "/nailong/?notice=refresh-unavailable#refresh"
    assert learner.refresher.running is None


# --- What the plugin is handed: nothing is trusted (issue 21) ----------------------------------------


def data_files(data: Path) -> set[str]:
    """Every file in the data folder apart from the model store (what a swap must never touch)."""
    return {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file() and "models" not in p.relative_to(data).parts}


@pytest.fixture
def sentinels(learner, tmp_path) -> set[str]:
    """A correction, a strike and a file of the operator's own in the data folder; all its files."""
    data = tmp_path / "data"
    correct(learner.corrections, 1)
    (data / "feedback" / "keep-me.txt").write_text("the operator's")
    (data / "strikes.json").write_text('{"1": {"7": [1.0]}}')
    return data_files(data)


@pytest.mark.parametrize("version", ["..", ".", "../../escape", "candidates", "a/b", ""])
async def test_a_candidate_whose_version_leaves_the_store_deletes_nothing(learner, fake_trainer, sentinels, tmp_path, version) -> None:
    fake_trainer(version=version)
    record = await learner.refresher.start("test")
    assert record.outcome == "error" and "model refused" in record.message, record.message
    data = tmp_path / "data"
    assert data_files(data) >= sentinels and (data / "feedback" / "keep-me.txt").read_text() == "the operator's"
    assert (data / "models" / "candidates").is_dir()  # the store itself too
    assert learner.model_version == "0.0.1" and not learner.models.can_roll_back()


async def test_a_model_file_linked_from_outside_the_store_is_refused(learner, fake_trainer, sentinels, tmp_path) -> None:
    outside = tmp_path / "elsewhere" / MODEL_FILE
    fake_trainer(symlink_model=str(outside))
    record = await learner.refresher.start("test")
    assert record.outcome == "error" and "symlinks in the model folder" in record.message, record.message
    assert learner.model_version == "0.0.1" and outside.is_file()
    assert data_files(tmp_path / "data") >= sentinels


async def test_a_kept_model_replaced_by_a_link_is_not_loaded_at_start(learner, start_guard, base_model, tmp_path) -> None:
    assert (await learner.refresher.start("test")).outcome == "passed"
    kept = tmp_path / "data" / "models" / "0.0.1+r1" / MODEL_FILE
    outside = build_tiny_model(tmp_path / "elsewhere" / MODEL_FILE, version="6.6.6")
    kept.unlink()
    kept.symlink_to(outside)
    write_checksum(kept)
    restarted = await start_guard(tmp_path / "data", nailong_model_path=base_model)
    assert restarted.model_version == "0.0.1"


@pytest.mark.parametrize("threshold", [1.0, 0.0, 0.995, 0.05])
async def test_a_candidate_recommending_a_threshold_that_acts_on_all_or_nothing_is_refused(
    learner, fake_trainer, sentinels, tmp_path, threshold
) -> None:
    fake_trainer(threshold=threshold)
    record = await learner.refresher.start("test")
    assert record.outcome == "error" and f"recommended threshold {threshold} outside (0.05, 0.995)" in record.message
    assert learner.model_version == "0.0.1" and learner.store.defaults.threshold == 0.7
    assert data_files(tmp_path / "data") >= sentinels


def pointers(base_sha256: str) -> dict[str, str]:
    """Hand-edited or damaged current.json files, each one a model folder name could not lead out of."""
    def pointer(current: object, previous: object = ()) -> str:
        return json.dumps({"base_sha256": base_sha256, "current": current, "previous": list(previous)})

    return {
        "outside": pointer("../../elsewhere"),
        "dot-dot": pointer(".."),
        "a-number": pointer(5),
        "bad-previous": pointer(None, ["../../elsewhere"]),
        "missing-folder": pointer("0.0.9+r1"),
        "not-json": "{",
        "a-list": "[]",
        "no-base": json.dumps({"current": None, "previous": []}),
    }


@pytest.mark.parametrize("case", list(pointers("")))
async def test_a_bad_current_json_falls_back_to_the_base_model(start_guard, base_model, tmp_path, case) -> None:
    data = tmp_path / "data"
    # A model outside the store, where "../../elsewhere" from the store leads.
    elsewhere = build_tiny_model(tmp_path / "elsewhere" / MODEL_FILE, version="6.6.6")
    write_checksum(elsewhere)
    (data / "models").mkdir(parents=True)
    (data / "feedback").mkdir()
    (data / "feedback" / "keep-me.txt").write_text("the operator's")
    sha256 = hashlib.sha256(base_model.read_bytes()).hexdigest()
    (data / "models" / "current.json").write_text(pointers(sha256)[case])

    runtime = await start_guard(data, nailong_model_path=base_model)

    assert runtime.model_version == "0.0.1"
    assert (data / "feedback" / "keep-me.txt").is_file() and elsewhere.is_file()
    assert not runtime.models.can_roll_back()


async def test_a_malformed_gate_report_is_shown_as_unreadable_never_an_error_page(
    app: App, learner, fake_trainer, start_guard, base_model, tmp_path
) -> None:
    fake_trainer(gate=json.dumps({"passed": True, "version": "0.0.1+r1", "checks": 5}))
    record = await learner.refresher.start("test")
    assert record.outcome == "error" and "gate report unreadable" in record.message
    assert learner.model_version == "0.0.1"
    # A record written before the report was typed, with a report that is not one, survives a restart.
    saved = json.loads((tmp_path / "data" / "models" / "last_refresh.json").read_text())
    saved["gate"] = {"checks": {"corrections": "5/5", "agreement": None}, "changed": "x"}
    (tmp_path / "data" / "models" / "last_refresh.json").write_text(json.dumps(saved))
    restarted = await start_guard(tmp_path / "data", nailong_model_path=base_model)
    assert restarted.refresher.last is not None and restarted.refresher.last.gate_error is not None

    (model,) = await chat(app, "/nailong model")
    assert "gate report unreadable" in model
    import httpx
    from fastapi import FastAPI

    from nailong_bot.web import mount

    web = FastAPI()
    mount(web, API_TOKEN, ADMIN_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://bot") as client:
        await sign_in(client)
        page = await client.get("/nailong/")
        status = await client.get("/nailong/api/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert page.status_code == 200 and "检查报告无法读取" in page.text
    assert status.status_code == 200 and status.json()["refresh"]["last"]["outcome"] == "error"


async def test_a_hung_trainer_is_killed_with_its_group_and_a_new_refresh_can_start(learner, fake_trainer, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(refresh, "STOP_SECONDS", 0.5, raising=False)
    refresher = learner.refresher
    config = refresher.config
    refresher.config = config.model_copy(update={"nailong_refresh_budget_seconds": 2, "nailong_refresh_grace_seconds": 1})
    fake_trainer(hang=True)  # ignores SIGTERM, and so does the child it started
    record = await asyncio.wait_for(refresher.start("chat:1:10000"), 60)

    assert record.outcome == "timed_out" and "was stopped" in record.message
    hung = json.loads((Path(record.folder) / "hung.json").read_text())
    assert hung["group"] == hung["trainer"] != os.getpgrp()  # a group of its own
    assert live_members(hung["group"]) == []  # the trainer and its child: gone
    assert refresher.running_trigger is None and not refresher.is_running()
    saved = json.loads((tmp_path / "data" / "models" / "last_refresh.json").read_text())
    assert saved["outcome"] == "timed_out"
    (ended,) = [e for e in learner.audit.latest(5) if e["action"] == "refresh-ended"]
    assert ended["operator"] == "chat:1:10000" and ended["after"]["outcome"] == "timed_out"

    fake_trainer()
    refresher.config = config  # the default deadline: a busy machine must not time this one out
    assert (await asyncio.wait_for(refresher.start("again"), 60)).outcome == "passed"


async def test_chat_replies_name_no_server_path(app: App, learner, fake_trainer, tmp_path) -> None:
    correct(learner.corrections, 1)
    answers = await chat(app, "/nailong feedback") + await chat(app, "/nailong model")
    for plan in ({"exit": 1}, {"sha256": "0" * 64}, {"version": ".."}):
        fake_trainer(**plan)
        answers += await chat(app, "/nailong refresh")
    answers += await chat(app, "/nailong model")
    text = "\n".join(answers)
    assert "Corrected images" in text and text.count("The refresh failed, 0.0.1 stays") == 4  # 3 results, the model
    for server_path in (str(tmp_path), str(HERE), "/tmp/"):
        assert server_path not in text, server_path
    # What the group is not told is in the record (the console shows it), without paths either.
    assert "model refused" in learner.refresher.last.message and str(tmp_path) not in learner.refresher.last.message


async def test_one_result_message_per_refresh(app: App, learner, fake_trainer) -> None:
    fake_trainer(sleep=3)
    task = learner.refresher.start("web:ops")
    (answer,) = await chat(app, "/nailong refresh")  # the result is not posted here a second time
    assert answer.startswith("A refresh is already running") and not task.done()
    assert (await task).outcome == "passed"


async def test_a_refreshed_model_shows_no_validation_numbers_it_was_not_validated_on(
    start_guard, fake_trainer, tmp_path
) -> None:
    base = build_tiny_model(tmp_path / "base" / MODEL_FILE, extra_metadata={"metrics": json.dumps(
        {"nailong_precision": 0.987, "nailong_recall": 0.953, "validation_images": 4000}
    )})  # fmt: skip
    write_checksum(base)
    (tmp_path / "base" / CHECKPOINT_FILE).write_bytes(b"checkpoint")
    runtime = await start_guard(tmp_path / "data", nailong_model_path=base, nailong_trainer_python=Path(sys.executable))
    from nailong_bot.web.api import model_card

    assert model_card(runtime)["metrics"]["nailong_precision"] == 0.987
    # As exports before this fix did: the base model's numbers copied into the refreshed one.
    fake_trainer(metrics={"nailong_precision": 0.987, "nailong_recall": 0.953, "validation_images": 4000})
    assert (await runtime.refresher.start("test")).outcome == "passed"
    assert model_card(runtime)["metrics"] is None
    import httpx
    from fastapi import FastAPI

    from nailong_bot.web import mount

    web = FastAPI()
    mount(web, API_TOKEN, ADMIN_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://bot") as client:
        await sign_in(client)
        page = (await client.get("/nailong/")).text
    assert "<dd>未验证</dd>" in page and "0.987" not in page
