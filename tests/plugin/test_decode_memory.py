"""Memory bounded by pixels: the cap counts the pixels actually decoded, large frames are reduced as
they are decoded, and one budget bounds the decoded memory of all decodes together."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from nailong_bot.budget import DecodeBudget
from nailong_bot.decision import Decider
from nailong_vision.classifier import Classifier
from nailong_vision.decode import ImageTooLarge, decode_cost, decode_frames
from nailong_vision.preprocess import PreprocessSpec, preprocess

from nailong_testkit import YELLOW, build_tiny_model, large_sparse_png, patterned


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_the_cap_counts_the_pixels_decoded_not_those_stored() -> None:
    scene = Image.open(io.BytesIO(patterned(YELLOW, seed=3, size=(2000, 1500))))
    # A JPEG decodes at a reduced scale (here ¼: 500×375), so a 3 MP photo fits under a 1 MP cap...
    (frame,) = decode_frames(encoded(scene, "JPEG"), max_pixels=1_000_000, draft_size=224)
    assert frame.size == (500, 375)
    # ...where a PNG, which cannot be decoded smaller, is refused before a pixel is decoded.
    with pytest.raises(ImageTooLarge, match="2000x1500"):
        decode_frames(encoded(scene, "PNG"), max_pixels=1_000_000, draft_size=224)


def test_the_issues_png_is_refused_by_default() -> None:
    # 6000×6600 RGBA in ~180 KB: it took the bot from 167 to 805 MB.
    with pytest.raises(ImageTooLarge):
        decode_frames(large_sparse_png(6000, 6600), draft_size=224)


def test_large_frames_are_reduced_as_they_are_decoded_and_look_the_same_to_the_model() -> None:
    data = large_sparse_png(2000, 1800)
    reserved: list[int] = []
    (frame,) = decode_frames(data, draft_size=224, reserve=reserved.append)
    assert frame.size == (500, 450)  # reduced by 4: both sides still at least twice the model's input
    assert reserved == [decode_cost(2000, 1800, 1, 224)] and reserved[0] >= 9 * 2000 * 1800
    spec = PreprocessSpec(size=224)
    (full,) = decode_frames(data)  # the whole frame, as before
    assert np.abs(preprocess([frame], spec) - preprocess([full], spec)).mean() < 0.01


def test_the_reservation_comes_before_any_pixel_is_decoded(monkeypatch) -> None:
    order: list[str] = []
    load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: (order.append("load"), load(self))[1])
    decode_frames(large_sparse_png(600, 600), draft_size=224, reserve=lambda amount: order.append("reserve"))
    assert order[:2] == ["reserve", "load"]


def test_the_budget_bounds_all_decodes_together() -> None:
    data = large_sparse_png(1500, 1500)
    one = decode_cost(1500, 1500, 1, 224)
    budget = DecodeBudget(one + one // 2)  # room for one such decode at a time
    most_used, lock = 0, threading.Lock()

    def decode() -> None:
        nonlocal most_used
        with budget.frames(data, draft_size=224) as frames:
            with lock:
                most_used = max(most_used, budget.used)
            time.sleep(0.05)
            assert frames[0].size == (750, 750)

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most_used == one and budget.used == 0


def test_a_small_image_passes_a_large_one_waiting_for_room() -> None:
    large, small = large_sparse_png(1500, 1500), patterned(YELLOW, seed=4, size=(200, 200))
    budget = DecodeBudget(decode_cost(1500, 1500, 1, 224) + decode_cost(200, 200, 1, 224))
    holding, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def hold_large() -> None:
        with budget.frames(large, draft_size=224):
            holding.set()
            release.wait(30)

    def decode(name: str, data: bytes) -> None:
        with budget.frames(data, draft_size=224):
            finished.append(name)

    holder = threading.Thread(target=hold_large)
    holder.start()
    assert holding.wait(30)
    waiting = threading.Thread(target=decode, args=("large", large))
    waiting.start()
    time.sleep(0.2)
    decode("small", small)  # does not wait behind the large one
    assert finished == ["small"]
    release.set()
    holder.join(30)
    waiting.join(30)
    assert finished == ["small", "large"] and budget.used == 0


async def test_the_deciders_worker_never_waits_for_room(tmp_path) -> None:
    classifier = Classifier(build_tiny_model(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    size = classifier.info.spec.size
    large, small = large_sparse_png(1500, 1500), patterned(YELLOW, seed=5, size=(200, 200))
    budget = DecodeBudget(decode_cost(1500, 1500, 1, size) + decode_cost(200, 200, 1, size))
    decider = Decider(classifier, workers=1, max_frames=8, max_pixels=10_000_000, budget=budget)
    holding, release = threading.Event(), threading.Event()

    def hold_large() -> None:
        with budget.frames(large, draft_size=size):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_large)
    holder.start()
    try:
        assert holding.wait(30)
        waiting = asyncio.create_task(decider.decide(large))
        await asyncio.sleep(0.3)
        # The one worker is free: the large image waits for room on the event loop, not in it.
        assert (await asyncio.wait_for(decider.decide(small), 10)).score >= 0.7
        assert not waiting.done()
    finally:
        release.set()
        holder.join(30)
    assert (await asyncio.wait_for(waiting, 10)).frames == 1
    assert budget.used == 0
    decider.shutdown()


# --- fair between groups (issue 21) -----------------------------------------------------------------


async def test_a_group_past_half_the_budget_waits_while_another_group_waits() -> None:
    budget = DecodeBudget(100)
    first_a = await budget.reserve(70, group="A")  # no one waits: A may take more than half
    second_a = asyncio.create_task(budget.reserve(70, group="A"))
    b = asyncio.create_task(budget.reserve(40, group="B"))
    await asyncio.sleep(0.05)
    assert not second_a.done() and not b.done()  # neither fits beside A's first
    budget._give_back(first_a, "A")
    await asyncio.sleep(0.05)
    # Room for either: B goes first (A was served last, and its second would be past half while B waits).
    assert b.done() and not second_a.done()
    assert (budget.used_by("B"), budget.used_by("A")) == (40, 0)
    budget._give_back(await b, "B")
    assert await asyncio.wait_for(second_a, 5) == 70 and budget.used_by("A") == 70
    budget._give_back(70, "A")
    assert budget.used == 0


async def test_two_groups_that_each_want_most_of_the_budget_take_turns() -> None:
    budget = DecodeBudget(100)
    holder = "A"
    await budget.reserve(90, group=holder)
    groups = ["A", "B", "A", "B"]  # queued in this order
    waiting = [asyncio.create_task(budget.reserve(90, group=group)) for group in groups]
    order: list[int] = []
    for _ in groups:
        await asyncio.sleep(0.02)
        budget._give_back(90, holder)
        await asyncio.sleep(0.02)
        (granted,) = [i for i, task in enumerate(waiting) if task.done() and i not in order]
        order.append(granted)
        holder = groups[granted]
    budget._give_back(90, holder)
    assert order == [1, 0, 3, 2] and budget.used == 0  # B, A, B, A: no group goes twice in a row


def test_a_waiting_thread_gets_its_turn_too() -> None:
    budget = DecodeBudget(100)
    budget._take(80, "A")
    took = threading.Event()

    def thumbnail() -> None:
        budget._take(50, None)
        took.set()

    thread = threading.Thread(target=thumbnail)
    thread.start()
    assert not took.wait(0.1)
    assert not budget._try_take(60, "A")  # past A's half while another waits
    assert budget._try_take(10, "C")  # a small one within its group's half passes
    budget._give_back(80, "A")
    assert took.wait(5)
    thread.join(5)
    assert budget.used == 60


async def test_a_waiter_given_up_lets_the_one_it_held_back_go() -> None:
    budget = DecodeBudget(100)
    await budget.reserve(30, group="C")
    b = asyncio.create_task(budget.reserve(80, group="B"))  # does not fit yet
    await asyncio.sleep(0.02)
    a = asyncio.create_task(budget.reserve(60, group="A"))  # fits, but past A's half while B waits
    await asyncio.sleep(0.02)
    assert not a.done()
    b.cancel()
    assert await asyncio.wait_for(a, 5) == 60 and budget.used == 90
