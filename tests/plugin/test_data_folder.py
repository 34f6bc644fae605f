"""A data folder the bot cannot write (read-only, a file in the way, a directory where settings.json
should be): the bot still starts and guards with the defaults and what it could read, says once at
start-up what it cannot save, and admins' changes are answered with "cannot save"."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from nonebug import App

from nailong_testkit import BLUE, SUPERUSER, YELLOW, patterned
from nonebug_chat import ask, post

CANNOT_SAVE = "Cannot save, nothing changed"
NAILONG = patterned(YELLOW, seed=41)
OTHER = patterned(BLUE, seed=42)


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if "| ERROR" in line]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")}


async def test_a_data_folder_that_cannot_be_created_still_guards(
    app: App, start_guard, tmp_path, image_server, caplog_loguru
) -> None:
    # A regular file where a parent folder should be: creating the folder fails even for root.
    (tmp_path / "not-a-folder").write_text("")
    guard = await start_guard(tmp_path / "not-a-folder" / "data")
    (line,) = errors(caplog_loguru)
    assert "无法保存群设置、近期图片（纠错用）、纠错" in line
    assert "cannot save group settings, recent images (for corrections), corrections" in line
    assert "not-a-folder" in line

    await post(app, image_server.add("ro-hit.jpg", NAILONG), message_id=501, acted_on=True)
    await post(app, image_server.add("ro-other.jpg", OTHER), message_id=502, acted_on=False)
    for command in ("/nailong off", "/nailong threshold 0.5", "/nailong action reply"):
        assert (await ask(app, command)).startswith(CANNOT_SAVE)
    assert (await ask(app, "/奶龙 关闭")).startswith("无法保存，未做任何更改")
    assert await ask(app, "/nailong wrong", reply_to=501) == await ask(app, "/nailong miss", reply_to=502)
    assert (await ask(app, "/nailong wrong", reply_to=501)).startswith(CANNOT_SAVE)
    assert (await ask(app, "/nailong undo", reply_to=501, user_id=SUPERUSER)).startswith(CANNOT_SAVE)
    status = await ask(app, "/nailong status")
    assert "Threshold: 0.7" in status and "changes cannot be saved" in status
    assert guard.store.get(1).enabled
    await post(app, image_server.add("ro-hit-2.jpg", patterned(YELLOW, seed=43)), message_id=503, acted_on=True)


async def test_a_directory_named_settings_json_leaves_the_defaults(
    app: App, start_guard, tmp_path, image_server, caplog_loguru
) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "settings.json").mkdir(parents=True)
    guard = await start_guard(data_dir)
    (line,) = errors(caplog_loguru)
    assert "cannot save group settings:" in line and "settings.json" in line
    assert (await ask(app, "/nailong threshold 0.5")).startswith(CANNOT_SAVE)
    assert guard.store.get(1).threshold == 0.7
    assert (data_dir / "settings.json").is_dir()
    # Only the settings are affected: the image is kept and a correction is saved.
    await post(app, image_server.add("dir-hit.jpg", NAILONG), message_id=511, acted_on=True)
    assert (await ask(app, "/nailong wrong", reply_to=511)).startswith("Recorded")
    await post(app, image_server.add("dir-hit-again.jpg", NAILONG), message_id=512, acted_on=False)


async def test_a_read_only_folder_keeps_what_it_could_read_and_writes_nothing(
    app: App, start_guard, tmp_path, image_server, caplog_loguru, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    guard = await start_guard(data_dir)
    await guard.store.update(7, enabled=False)
    await post(app, image_server.add("ro-before.jpg", OTHER), message_id=521, acted_on=False)
    assert (await ask(app, "/nailong miss", reply_to=521)).startswith("Recorded")
    from nailong_bot import runtime

    await runtime.stop()  # saves its last counts, before the folder turns read-only
    before = snapshot(data_dir)

    # Root writes through permission bits, so the filesystem's refusal is what is simulated:
    # creating any file in the data folder fails as on a read-only mount.
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(data_dir) in os.fsdecode(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    caplog_loguru.clear()
    guard = await start_guard(data_dir)
    (line,) = errors(caplog_loguru)
    assert "Read-only file system" in line
    assert not guard.store.is_enabled(7)  # settings read
    assert [c.label for c in guard.corrections.pending(5)] == ["nailong"]  # and corrections in force
    await post(app, image_server.add("ro-corrected.jpg", OTHER), message_id=522, acted_on=True)
    assert (await ask(app, "/nailong on", group_id=7)).startswith(CANNOT_SAVE)
    assert snapshot(data_dir) == before
