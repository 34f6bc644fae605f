"""The bot learns from its admins, end to end: `bot.py` as a real process on a tiny timm model (with its
checkpoint) behind a real WebSocket, and the real `trainer refresh` in the bot's low-priority subprocess.

Admins correct a look-alike family in the chat; `/nailong refresh` trains, gates and swaps the model in
without a restart, and the family's next image is decided the new way while the guard keeps acting on
every image posted meanwhile. Corrections the model cannot learn without changing everything else fail
the gate: the model stays, and the bot says why. `/nailong rollback` restores the old model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from bot_process import running_bot
from nailong_testkit import SUPERUSER, FakeOneBot, group_message_payload, image_segment, text_segment

pytest.importorskip("torch")
pytest.importorskip("timm")

from tests.trainer.conftest import encode, nailong_like  # noqa: E402
from tests.trainer.refresh_kit import build_base, lookalikes, ordinary_images  # noqa: E402

from nailong_vision.classifier import Classifier  # noqa: E402
from nailong_vision.decode import decode_frames  # noqa: E402
from nailong_vision.phash import hamming, phash  # noqa: E402
from nailong_vision.preprocess import preprocess  # noqa: E402

GROUP = 401
ADMIN = 5
# The refresh's budget on the tiny model: training, gate and export take seconds; the rest is start-up.
BUDGET = 60
REFRESH_TIMEOUT = 600


def _hash(data: bytes) -> int:
    return phash(decode_frames(data, max_frames=1)[0])


def far_from(images: list[bytes], corrected: list[bytes]) -> list[bytes]:
    """The images no correction of ``corrected`` decides by its perceptual hash (past its 6 bits): what
    they are decided as is the model's doing."""
    hashes = [_hash(data) for data in corrected]
    return [data for data in images if all(hamming(_hash(data), h) > 8 for h in hashes)]


def spread(images: list[bytes], count: int) -> list[bytes]:
    """``count`` images no two of which one correction would decide."""
    chosen: list[bytes] = []
    for data in images:
        if len(chosen) < count and far_from([data], chosen):
            chosen.append(data)
    assert len(chosen) == count, f"only {len(chosen)} distinct images"
    return chosen


def scores(model: Path, images: list[bytes]) -> np.ndarray:
    classifier = Classifier(model, providers=["CPUExecutionProvider"])
    spec = classifier.info.spec
    return np.array([classifier.nailong_scores(preprocess(decode_frames(data), spec)).max() for data in images])


class Chat:
    """A group with the bot in it: images posted by a member, commands by an admin or the superuser."""

    def __init__(self, onebot: FakeOneBot, server) -> None:
        self.onebot, self.server = onebot, server
        self.message_ids = iter(range(9000, 100_000))
        self.posted: list[int] = []

    async def post(self, data: bytes) -> int:
        message_id = next(self.message_ids)
        url = self.server.add(f"refresh-{message_id}.png", data, content_type="image/png")
        self.posted.append(message_id)
        await self.onebot.post(
            group_message_payload([image_segment(url)], self_id=42, group_id=GROUP, user_id=7, message_id=message_id)
        )
        return message_id

    async def recalled(self, data: bytes) -> bool:
        """Post an image, then a known hit behind it: was the image recalled by the time the hit was?"""
        message_id = await self.post(data)
        barrier = await self.post(self.hit)
        await self.onebot.wait_for("delete_msg", timeout=60, message_id=barrier)
        await asyncio.sleep(0.3)
        return any(p["message_id"] == message_id for _, p in self.onebot.actions("delete_msg"))

    async def command(self, text: str, *, user_id: int = ADMIN, answers: int = 1, timeout: float = 60) -> list[str]:
        seen = len(self.onebot.actions("send_msg"))
        role = "member" if user_id == SUPERUSER else "admin"
        await self.onebot.post(
            group_message_payload([text_segment(text)], self_id=42, group_id=GROUP, user_id=user_id, role=role)
        )
        deadline = time.monotonic() + timeout
        while len(self.onebot.actions("send_msg")) < seen + answers:
            assert time.monotonic() < deadline, f"no answer to {text!r} within {timeout}s"
            await asyncio.sleep(0.2)
        return [
            "".join(s["data"].get("text", "") for s in p["message"]) for _, p in self.onebot.actions("send_msg")[seen:]
        ]

    async def correct_as_wrong(self, data: bytes) -> None:
        """Post a hit, then a superuser's `/奶龙 误判` without a reply: the group's latest hit, corrected for
        every group (a group admin's word would stay in the group, and the refresh would not learn it)."""
        message_id = await self.post(data)
        await self.onebot.wait_for("delete_msg", timeout=60, message_id=message_id)
        await asyncio.sleep(1.0)  # kept among the recent images right after the recall
        (answer,) = await self.command("/奶龙 误判", user_id=SUPERUSER)
        # The answer names the sender and the time (the corrected hit is the latest one not corrected yet).
        assert answer.startswith("已记录：这不是奶龙") and "（本群最近一次未纠错的命中：tester " in answer, answer


async def test_corrections_refresh_gate_hot_swap_and_rollback(tmp_path, image_server) -> None:
    base = build_base(tmp_path / "base", tmp_path / "work")
    base_model = base / "nailong.onnx"
    threshold = Classifier(base_model, providers=["CPUExecutionProvider"]).info.threshold
    rng = np.random.default_rng(7)
    plain = [encode(nailong_like(rng)) for _ in range(60)]
    plain_hits = [data for data, score in zip(plain, scores(base_model, plain)) if score >= threshold]
    family = lookalikes(40, seed=11)
    flagged = [data for data, score in zip(family, scores(base_model, family)) if score >= threshold]
    corrected, wrongly_corrected = spread(flagged, 5), spread(plain_hits[::-1], 5)
    held_out = far_from(flagged, corrected + wrongly_corrected)
    plain_hits = far_from(plain_hits, corrected + wrongly_corrected)
    assert len(plain_hits) >= 6 and len(held_out) >= 5, "the tiny base should flag nailong and its look-alikes"

    workdir = tmp_path / "bot"
    async with running_bot(
        workdir,
        NAILONG_MODEL_PATH=str(base_model),
        NAILONG_DATA_DIR=str(workdir / "data"),
        NAILONG_REFRESH_BUDGET_SECONDS=str(BUDGET),
    ) as onebot:
        chat = Chat(onebot, image_server)
        chat.hit = plain_hits[0]
        # What the group posted lately: the recent images the refresh replays.
        ordinary = ordinary_images(60, seed=5)
        posted = [await chat.post(data) for data in ordinary]
        for message_id, score in zip(posted, scores(base_model, ordinary)):
            if score >= threshold:  # all of them decided before the corrections name "the latest hit"
                await onebot.wait_for("delete_msg", timeout=60, message_id=message_id)
        # The look-alike family is recalled (each image is a hit before it is corrected).
        for data in corrected:
            await chat.correct_as_wrong(data)

        # The refresh runs in the background; the guard keeps acting on every image meanwhile.
        started = len(onebot.actions("send_msg"))
        refresh = asyncio.create_task(chat.command("/nailong refresh", user_id=SUPERUSER, answers=2, timeout=REFRESH_TIMEOUT))
        while len(onebot.actions("send_msg")) == started:
            await asyncio.sleep(0.2)
        during = []
        while not refresh.done():
            during.append(await chat.post(plain_hits[1 + len(during) % (len(plain_hits) - 1)]))
            await asyncio.sleep(1.0)
        starting, result = await refresh
        assert starting.startswith("Refresh started"), starting
        assert "New model in use" in result, result
        assert "✓ corrections decided their way: 5/5" in result
        for message_id in during:
            await onebot.wait_for("delete_msg", timeout=60, message_id=message_id)
        assert len(during) >= 3

        (model,) = await chat.command("/nailong model", user_id=SUPERUSER)
        assert "+r1" in model and "with 5 corrections" in model, model
        (kept,) = [p for p in (workdir / "data" / "models").iterdir() if (p / "nailong.onnx").is_file()]
        new_model = kept / "nailong.onnx"

        # The family's next images: decided the new way. The refresh learnt the family (most held-out
        # images now pass), and the bot decides each of them as the new model does, not as the old.
        after = scores(new_model, held_out[1:])
        learnt = [data for data, score in zip(held_out[1:], after) if score < threshold]
        assert len(learnt) >= len(held_out[1:]) // 2, f"the refresh should learn the family: {after}"
        for data in learnt[:3]:
            assert not await chat.recalled(data)
        assert await chat.recalled(plain_hits[-1])  # nailong is still nailong

        # Corrections that contradict what the group posts (plain nailong "is not nailong"): the candidate
        # either does not learn them or changes the rest with them. The gate fails; the model stays.
        for data in wrongly_corrected:
            await chat.correct_as_wrong(data)
        _, failed = await chat.command("/nailong refresh", user_id=SUPERUSER, answers=2, timeout=REFRESH_TIMEOUT)
        assert "The gate failed" in failed and "✗" in failed and "未通过" not in failed, failed
        (model,) = await chat.command("/nailong model", user_id=SUPERUSER)
        assert kept.name in model
        assert not await chat.recalled(learnt[0])  # still the refreshed model

        (rolled,) = await chat.command("/nailong rollback", user_id=SUPERUSER)
        assert rolled.startswith("Rolled back: ") and rolled.endswith(" → 2026.01.01.1"), rolled
        (model,) = await chat.command("/奶龙 模型", user_id=SUPERUSER)
        assert "此后已回退，现在使用 2026.01.01.1" in model, model  # the model in use, not the refresh's result
        # Back on the base: the family is recalled again (the corrected images themselves stay corrected).
        assert await chat.recalled(learnt[0])
        assert onebot.process.poll() is None

    log = (workdir / "bot.log").read_text(errors="replace")
    assert log.count("奶龙模型已加载 / model loaded") == 1  # one start: no restart anywhere
