"""Where a correction applies: one group's admin moderates one group; every group on a superuser's word,
a confirmation or admins of enough groups agreeing; logs from before scopes; the folder's disk use."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from nailong_vision.decode import decode_frames

from nailong_bot.corrections import (
    CSV_COLUMNS,
    CSV_FILE,
    PENDING_DIR,
    RETIRED_DIR,
    V1_COLUMNS,
    Corrections,
    FolderFull,
    image_id,
)
from tests.feedback.test_corrections import encode, repost, scene
from trainer.feedback import read_corrections

ADMIN_A, ADMIN_B, ADMIN_C, SUPERUSER = 11, 12, 13, 99
GROUP_A, GROUP_B, GROUP_C = 1001, 1002, 1003


def admin_says(store: Corrections, data: bytes, label: str, group: int, user: int):
    return store.add(data, label=label, group_id=group, user_id=user, score=0.5, model_version="v1")


def decides(store: Corrections, data: bytes, group: int | None) -> str | None:
    found = store.lookup(decode_frames(data), image_id=image_id(data), group_id=group)
    return None if found is None else found.label


def image_files(folder) -> list:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".bmp")]


def test_a_group_admins_correction_applies_in_that_group_only(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(21))
    correction = admin_says(store, data, "nailong", GROUP_A, ADMIN_A)

    assert not correction.everywhere and correction.scope == GROUP_A
    assert (correction.group_id, correction.user_id) == (GROUP_A, ADMIN_A)
    assert decides(store, data, GROUP_A) == "nailong" and decides(store, repost(data), GROUP_A) == "nailong"
    assert decides(store, data, GROUP_B) is None and decides(store, data, None) is None
    # Not training data: outside the label folders, and not read by the refresh.
    assert correction.file.startswith(f"{PENDING_DIR}/")
    assert store.counts() == {"nailong": 0, "other": 0} and store.pending(10) == [correction]
    assert read_corrections(tmp_path) == []
    with store.csv_path.open(encoding="utf-8", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert (row["scope"], row["group_id"], row["user_id"], row["confirmed_by"]) == ("1001", "1001", "11", "")
    # Across a restart too.
    assert decides(Corrections(tmp_path), data, GROUP_B) is None


def test_a_groups_own_word_comes_before_the_one_for_every_group(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(22))
    store.add(data, label="nailong", group_id=GROUP_A, user_id=SUPERUSER, score=0.5, model_version="v1",
              everywhere=True)
    admin_says(store, data, "other", GROUP_B, ADMIN_B)
    assert decides(store, data, GROUP_B) == "other"
    assert decides(store, data, GROUP_C) == "nailong" and decides(store, data, None) == "nailong"


def test_admins_of_two_groups_agreeing_make_it_apply_everywhere(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(23))
    admin_says(store, data, "nailong", GROUP_A, ADMIN_A)
    admin_says(store, data, "other", GROUP_C, ADMIN_C)  # disagrees: stays in its group
    # The same person as admin of two groups is one voice.
    admin_says(store, repost(data), "nailong", GROUP_B, ADMIN_A)
    assert decides(store, data, GROUP_C) == "other" and decides(store, data, None) is None

    agreed = admin_says(store, repost(data), "nailong", GROUP_B, ADMIN_B)
    assert agreed.everywhere and agreed.confirmed_by == f"groups:{GROUP_A},{GROUP_B}"
    assert decides(store, data, None) == "nailong" and decides(store, data, 4242) == "nailong"
    assert decides(store, data, GROUP_C) == "other"  # a disagreeing group keeps its own word there
    assert [c.group_id for c in store.pending(10)] == [GROUP_C]
    assert [c.id for c in read_corrections(tmp_path)] == [agreed.id]
    assert (tmp_path / agreed.file).parent.name == "nailong"


def test_the_number_of_groups_that_must_agree_is_a_setting(tmp_path):
    store = Corrections(tmp_path, agree_groups=3)
    data = encode(scene(24))
    admin_says(store, data, "other", GROUP_A, ADMIN_A)
    assert not admin_says(store, data, "other", GROUP_B, ADMIN_B).everywhere
    assert admin_says(store, data, "other", GROUP_C, ADMIN_C).everywhere
    assert store.pending(10) == [] and store.counts() == {"nailong": 0, "other": 1}


def test_a_superusers_word_applies_everywhere_and_replaces_every_groups(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(25))
    admin_says(store, data, "nailong", GROUP_A, ADMIN_A)
    final = store.add(repost(data), label="other", group_id=GROUP_B, user_id=SUPERUSER, score=0.5,
                      model_version="v1", everywhere=True)
    assert final.everywhere and final.confirmed_by == str(SUPERUSER)
    assert decides(store, data, GROUP_A) == "other" and store.pending(10) == []


def test_a_confirmation_makes_a_groups_correction_apply_everywhere(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(26))
    local = admin_says(store, data, "nailong", GROUP_A, ADMIN_A)
    admin_says(store, data, "other", GROUP_B, ADMIN_B)
    assert store.confirm(GROUP_B, "0" * 16, operator=SUPERUSER) is None

    confirmed = store.confirm(GROUP_A, local.id, operator="web:ops")
    assert confirmed.everywhere and confirmed.confirmed_by == "web:ops"
    assert (confirmed.group_id, confirmed.user_id) == (GROUP_A, ADMIN_A)  # who made it and where stay
    assert decides(store, data, GROUP_B) == "nailong" and decides(store, data, None) == "nailong"
    assert store.pending(10) == []
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)] == [confirmed.file]
    assert [c.id for c in read_corrections(tmp_path)] == [local.id]
    reopened = Corrections(tmp_path)
    assert reopened.counts() == {"nailong": 1, "other": 0} and reopened.pending(10) == []


def test_undo_in_a_group_removes_what_decides_the_image_there(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(27))
    everywhere = store.add(data, label="other", group_id=GROUP_C, user_id=SUPERUSER, score=0.5,
                           model_version="v1", everywhere=True)
    local = admin_says(store, data, "nailong", GROUP_A, ADMIN_A)
    kept = admin_says(store, data, "nailong", GROUP_B, ADMIN_B)  # agrees with A: everywhere now
    assert kept.everywhere and decides(store, data, GROUP_A) == "nailong"
    undone = store.undo(data, group_id=GROUP_A, user_id=SUPERUSER)
    assert {c.id for c in undone} == {local.id} and decides(store, data, GROUP_A) is None
    assert everywhere not in store.newest(10)


def write_v1_log(folder, rows: list[dict]) -> None:
    with (folder / CSV_FILE).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=V1_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def v1_row(data: bytes, label: str, group: int, user: int | str, action: str = "add") -> dict:
    from nailong_vision.phash import frame_hash

    return {"time": "2026-11-01T10:00:00+08:00", "action": action, "id": image_id(data), "label": label,
            "group_id": group, "user_id": user, "score": "0.5", "model_version": "v0",
            "file": f"{label}/{image_id(data)}.png", "phash": f"{frame_hash(decode_frames(data)[0]):016x}"}


def test_a_log_from_before_scopes_loads_with_the_safe_scopes(tmp_path):
    by_admin, by_superuser, no_group, undone = (encode(scene(seed)) for seed in (28, 29, 30, 31))
    rows = [v1_row(by_admin, "nailong", GROUP_A, ADMIN_A), v1_row(by_superuser, "other", GROUP_B, SUPERUSER),
            v1_row(no_group, "other", 0, "web"), v1_row(undone, "nailong", GROUP_C, ADMIN_C),
            {**v1_row(undone, "nailong", GROUP_C, SUPERUSER, "undo"), "file": f"{RETIRED_DIR}/nailong/x.png"}]
    for data, row in zip((by_admin, by_superuser, no_group, undone), rows):
        (tmp_path / row["label"]).mkdir(exist_ok=True)
        (tmp_path / row["file"]).write_bytes(data)
    write_v1_log(tmp_path, rows)

    store = Corrections(tmp_path, superusers={str(SUPERUSER)})
    assert decides(store, by_admin, GROUP_A) == "nailong" and decides(store, by_admin, GROUP_B) is None
    assert decides(store, by_superuser, GROUP_C) == "other"
    assert decides(store, no_group, GROUP_A) is None and decides(store, no_group, None) is None  # until confirmed
    assert decides(store, undone, GROUP_C) is None
    assert {(c.group_id, c.id) for c in store.pending(10)} == {(GROUP_A, image_id(by_admin)), (0, image_id(no_group))}
    # The admins' images left the training folders; the old log is kept; the new one has the scope columns.
    assert (tmp_path / PENDING_DIR / f"{image_id(by_admin)}.png").read_bytes() == by_admin
    assert not (tmp_path / "nailong" / f"{image_id(by_admin)}.png").exists()
    assert len(list(tmp_path.glob(f"{CSV_FILE}.v1-*"))) == 1
    with store.csv_path.open(encoding="utf-8", newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == CSV_COLUMNS
    assert [c.id for c in read_corrections(tmp_path)] == [image_id(by_superuser)]

    reopened = Corrections(tmp_path)
    assert len(reopened) == 3 and decides(reopened, by_admin, GROUP_B) is None
    assert reopened.confirm(0, image_id(no_group), operator=SUPERUSER).everywhere


def test_twenty_relabels_of_one_image_keep_one_copy(tmp_path):
    store = Corrections(tmp_path)
    data = encode(scene(32))
    for flip in range(20):
        label = ("nailong", "other")[flip % 2]
        admin_says(store, data, label, GROUP_A, ADMIN_A)
        store.add(data, label=label, group_id=GROUP_A, user_id=SUPERUSER, score=0.5, model_version="v1",
                  everywhere=True)
    assert len(image_files(tmp_path)) == 1
    assert store.folder_bytes() < len(data) + store.csv_path.stat().st_size + 1


def test_the_folder_cap_deletes_the_oldest_retired_copies_then_refuses(tmp_path):
    images = [encode(scene(seed), "BMP") for seed in range(40, 46)]  # all the same size
    store = Corrections(tmp_path, max_bytes=int(len(images[0]) * 3.5))
    first, second = (store.add(data, label="other", group_id=GROUP_A, user_id=SUPERUSER, score=0.5,
                               model_version="v1", everywhere=True) for data in images[:2])
    store.undo(correction_id=first.id, user_id=SUPERUSER)
    store.undo(correction_id=second.id, user_id=SUPERUSER)
    assert len(list((tmp_path / RETIRED_DIR).rglob("*.bmp"))) == 2

    admin_says(store, images[2], "other", GROUP_A, ADMIN_A)
    admin_says(store, images[3], "other", GROUP_A, ADMIN_A)
    # Room for the third live image: the oldest retired copy went first.
    assert not (tmp_path / RETIRED_DIR / first.file).exists()
    admin_says(store, images[4], "other", GROUP_A, ADMIN_A)
    assert not list((tmp_path / RETIRED_DIR).rglob("*.bmp"))
    # Live corrections fill the folder: the next is refused, and nothing live was dropped.
    with pytest.raises(FolderFull, match="NAILONG_FEEDBACK_MAX_MB"):
        admin_says(store, images[5], "other", GROUP_A, ADMIN_A)
    assert len(store) == 3 and len(image_files(tmp_path)) == 3
    assert all(decides(store, data, GROUP_A) == "other" for data in images[2:5])
    assert decides(store, images[5], GROUP_A) is None


def test_a_flat_images_group_correction_matches_only_its_bytes_in_that_group(tmp_path):
    store = Corrections(tmp_path)
    white = encode(Image.new("RGB", (40, 40), "white"))
    admin_says(store, white, "other", GROUP_A, ADMIN_A)
    assert decides(store, white, GROUP_A) == "other" and decides(store, white, GROUP_B) is None
