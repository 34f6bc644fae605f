"""The audit log of console and API changes: appended JSON lines, read back newest first from the file's
tail, and never a crash when the data folder cannot be written."""

from __future__ import annotations

import json

from nailong_bot.audit import AuditLog


def test_entries_are_appended_and_read_back_newest_first(tmp_path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    assert audit.save_error is None and audit.latest(5) == []
    audit.record("web:阿龙", "correction", before={"verdict": "nailong"}, after={"verdict": "other"}, client="::1")
    audit.record("web", "group-settings", before={"threshold": 0.7}, after={"threshold": 0.8})
    newest, oldest = audit.latest(5)
    assert newest["action"] == "group-settings" and newest["client"] is None
    assert oldest == {**oldest, "operator": "web:阿龙", "client": "::1", "before": {"verdict": "nailong"},
                      "after": {"verdict": "other"}}  # fmt: skip
    assert "阿龙" in (tmp_path / "audit.jsonl").read_text(encoding="utf-8")  # readable as it is
    # Appended, never rewritten: a second log object on the same file adds to it.
    AuditLog(tmp_path / "audit.jsonl").record("web", "x", before=None, after=None)
    assert [e["action"] for e in audit.latest(5)] == ["x", "group-settings", "correction"]


def test_latest_reads_only_the_tail_of_a_long_log(tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    audit.record("web", "correction", before={"n": 0, "pad": "x" * 100}, after=None)
    line = path.read_text(encoding="utf-8")
    # Written in one go rather than record()'s fsync per entry, to keep the test quick.
    path.write_text("".join(line.replace('"n": 0', f'"n": {number}') for number in range(3000)), encoding="utf-8")
    assert path.stat().st_size > 3 * 64 * 1024
    assert [e["before"]["n"] for e in audit.latest(3)] == [2999, 2998, 2997]
    assert len(audit.latest(2000)) == 2000 and audit.latest(0) == []


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    audit.record("web", "first", before=None, after=None)
    with path.open("a", encoding="utf-8") as file:
        file.write('{"time": "2026-12-03T06:00:00+00:00", "operator": "we')
    assert [e["action"] for e in audit.latest(5)] == ["first"]


def test_an_unwritable_folder_loses_no_entry_and_raises_nothing(tmp_path, caplog_loguru) -> None:
    (tmp_path / "a-file").write_text("")
    audit = AuditLog(tmp_path / "a-file" / "data" / "audit.jsonl")
    assert audit.save_error is not None
    audit.record("web", "correction", before={"verdict": "nailong"}, after={"verdict": "other"}, client="127.0.0.1")
    (line,) = [line for line in caplog_loguru if "audit entry not saved" in line]
    logged = json.loads(line[line.index("{"):])
    assert logged["after"] == {"verdict": "other"} and logged["client"] == "127.0.0.1"
    assert audit.latest(5) == []


async def test_the_runtime_keeps_an_audit_log_in_the_data_folder(start_guard, tmp_path) -> None:
    runtime = await start_guard(tmp_path / "kept")
    assert runtime.audit.path == tmp_path / "kept" / "audit.jsonl"


def test_the_log_is_rotated_by_size_and_read_across_the_rotation(tmp_path) -> None:
    """Issue 21: the audit log was never rotated."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, max_bytes=1000, keep=2)
    for number in range(40):
        audit.record("web", "group-settings", before={"n": number}, after={"pad": "x" * 50})
    files = sorted(tmp_path.glob("audit.jsonl*"))
    assert [f.name for f in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(f.stat().st_size <= 1000 for f in files)
    kept = [json.loads(line)["before"]["n"] for f in reversed(files) for line in f.read_text().splitlines()]
    assert kept == list(range(40 - len(kept), 40))  # the oldest went first, nothing in between was lost
    # The newest entries, newest first, across the files: more than the current file holds.
    in_current = len(path.read_text().splitlines())
    assert [e["before"]["n"] for e in audit.latest(in_current + 3)] == list(range(39, 39 - in_current - 3, -1))
    assert len(audit.latest(1000)) == len(kept)


def test_a_line_longer_than_the_limit_is_kept_whole(tmp_path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", max_bytes=100, keep=1)
    audit.record("web", "long", before="y" * 500, after=None)
    audit.record("web", "next", before=None, after=None)
    assert [e["action"] for e in audit.latest(5)] == ["next", "long"]
    assert len((tmp_path / "audit.jsonl.1").read_text()) > 500


async def test_the_runtime_rotates_by_the_settings(start_guard, tmp_path) -> None:
    runtime = await start_guard(tmp_path / "kept", nailong_audit_max_mb=0.001, nailong_audit_keep=1)
    assert (runtime.audit.max_bytes, runtime.audit.keep) == (1048, 1)
