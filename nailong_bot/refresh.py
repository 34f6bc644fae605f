"""Refresh: the model learns the admins' corrections without a maintainer.

The trainer's `refresh` command fine-tunes the model in use on the corrections in a subprocess at low
CPU priority (one thread by default); its gate checks the candidate, and one that passes is swapped
in (:class:`~nailong_bot.models.Models`). The bot keeps guarding meanwhile: the subprocess is awaited
on the event loop, never waited for in it. torch is never imported here: the trainer runs in
NAILONG_TRAINER_PYTHON, by default the bot's own interpreter when torch is installed there.

Started by `/nailong refresh`, the console's button, or on its own (NAILONG_AUTO_REFRESH) once
NAILONG_AUTO_REFRESH_CORRECTIONS corrections are newer than the model and the last refresh, at most
once per NAILONG_AUTO_REFRESH_INTERVAL_HOURS. One refresh runs at a time.

The trainer runs in a process group of its own; one that is still running at its budget plus
NAILONG_REFRESH_GRACE_SECONDS is stopped, the whole group (SIGTERM, then SIGKILL). Every refresh ends in
a record (last_refresh.json) and a line of the audit log. What the files it is handed hold (the gate
report, the exit code) is checked against the handoff module; a record names no path on the server (the
paths and the trainer's own words are in the log, the console and ``refresh.log``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from nonebot.log import logger

from nailong_vision.classifier import ModelError, ModelInfo
from nailong_vision.handoff import (
    CHECKPOINT_FILE,
    GATE_FILE,
    MODEL_FILE,
    TRAINER_LOG_FILE,
    ExitCode,
    GateReport,
    GateReportError,
)

from . import persist
from .audit import AuditLog
from .config import Config
from .corrections import Corrections
from .models import Models

INSTALL_HINT = (
    "更新模型需要训练组件：pip install \"nailong-bot[train]\"（或把 NAILONG_TRAINER_PYTHON 设为装了它的 Python）/ "
    "Refreshing needs the trainer: pip install \"nailong-bot[train]\" (or point NAILONG_TRAINER_PYTHON at a "
    "Python that has it)."
)
LAST_REFRESH_FILE = "last_refresh.json"
# How often automatic mode counts the new corrections.
AUTO_CHECK_SECONDS = 60.0
# How long a trainer stopped at its deadline has to save its progress and exit before it is killed.
STOP_SECONDS = 10.0
_LOG_TAIL_LINES = 5
# Lowers the trainer's priority before it imports anything, so every thread torch starts inherits it;
# then runs `python -m <module>` with the remaining arguments.
_LAUNCHER = (
    "import os, runpy, sys; niceness = int(sys.argv.pop(1)); hasattr(os, 'nice') and os.nice(niceness); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)
# Where a checkout of the project keeps the trainer, beside this plugin.
_CHECKOUT = Path(__file__).resolve().parent.parent

Outcome = Literal["passed", "failed", "error", "timed_out"]
OUTCOMES: tuple[Outcome, ...] = ("passed", "failed", "error", "timed_out")


class TrainerTimedOut(Exception):
    """The trainer ran past its deadline and was stopped."""


# In a record's message where the trainer said the gate passed but its report cannot be read.
GATE_UNREADABLE = "检查报告无法读取 / gate report unreadable"


@dataclass(frozen=True)
class RefreshRecord:
    """One refresh as it ended: kept in last_refresh.json and shown by `/nailong model` and the console."""

    trigger: str  # "auto", or the operator who started it ("qq:10001 (小王)", "web:阿龙")
    started_at: float  # wall-clock seconds
    finished_at: float
    outcome: Outcome
    message: str  # one paragraph, Chinese / English; no server paths
    base_version: str
    version: str | None = None  # the candidate's version, when the trainer got that far
    gate: GateReport | None = None  # the trainer's gate.json
    gate_error: str | None = None  # why gate.json could not be read, when the trainer left one
    folder: str | None = None  # where the candidate, its gate report and the trainer's log are

    @classmethod
    def from_json(cls, raw: object) -> RefreshRecord:
        """A record as last_refresh.json keeps it; ValueError for one that is damaged. A gate report
        that cannot be read leaves the record readable, its gate shown as unreadable."""
        if not isinstance(raw, dict) or raw.get("outcome") not in OUTCOMES:
            raise ValueError("not a refresh record")
        for name in ("started_at", "finished_at"):
            if not isinstance(raw.get(name), (int, float)) or isinstance(raw[name], bool) or not math.isfinite(raw[name]):
                raise ValueError(f"{name}: not a time")
        for name, kinds in (("trigger", str), ("message", str), ("base_version", str), ("version", (str, type(None))),
                            ("gate_error", (str, type(None))), ("folder", (str, type(None)))):
            if not isinstance(raw.get(name), kinds):
                raise ValueError(f"{name}: not text")
        gate, gate_error = None, raw.get("gate_error")
        if raw.get("gate") is not None:
            try:
                gate = GateReport.from_dict(raw["gate"])
            except GateReportError as error:
                gate_error = str(error)
        fields = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        # A record kept by an earlier version may name paths in its message.
        message = persist.without_paths(raw["message"])
        return cls(**{**fields, "message": message, "gate": gate, "gate_error": gate_error})

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)


def trainer_python(config: Config) -> str | None:
    """The interpreter that runs the trainer, or None when none is configured and torch is not
    installed beside the bot (found without importing it)."""
    if config.nailong_trainer_python is not None:
        return str(config.nailong_trainer_python)
    return sys.executable if importlib.util.find_spec("torch") is not None else None


def in_checkout() -> bool:
    return (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "trainer").is_dir()


def trainer_module() -> str:
    """`trainer` in a checkout of the project (its own, whatever else is installed); `nailong_trainer`,
    the name an installed wheel gives it."""
    return "trainer" if in_checkout() else "nailong_trainer"


def _tail(log: Path) -> str:
    """The last lines of the trainer's log: what an error message shows."""
    with log.open("rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - 16 * 1024))
        lines = file.read().decode("utf-8", errors="replace").strip().splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _timestamp(iso: str | None) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else 0.0
    except ValueError:
        return 0.0


class Refresher:
    def __init__(
        self, config: Config, data_dir: Path, models: Models, corrections: Corrections, audit: AuditLog
    ) -> None:
        self.config = config
        # Each refresh's start and outcome, whoever started it.
        self.audit = audit
        self.data_dir = data_dir
        self.models = models
        self.corrections = corrections
        self.record_path = models.directory / LAST_REFRESH_FILE
        self.last: RefreshRecord | None = self._read_record()
        self.running: asyncio.Task[RefreshRecord] | None = None
        # The trigger of the refresh in progress, for `/nailong model` and the console.
        self.running_trigger: str | None = None
        self._said_unavailable = False

    def corrections_since(self, seconds: float) -> int:
        """Active corrections that apply everywhere (the ones a refresh learns) recorded or confirmed after
        ``seconds`` (wall clock)."""
        learned = self.corrections.newest(len(self.corrections), everywhere=True)
        return sum(1 for c in learned if _timestamp(c.time) > seconds)

    def corrections_since_model(self) -> int:
        """Corrections newer than the model in use: what it has not learned."""
        return self.corrections_since(_timestamp(self.models.in_use.metadata.get("created_at")))

    def unavailable(self) -> str | None:
        """Why a refresh cannot run here, or None when it can: "no_trainer" (no Python with the trainer)
        or "no_checkpoint" (no :attr:`checkpoint` beside the model in use); worded by the catalogue (i18n/)."""
        if trainer_python(self.config) is None:
            return "no_trainer"
        if not self.checkpoint.is_file():
            return "no_checkpoint"
        return None

    @property
    def checkpoint(self) -> Path:
        """The training checkpoint a refresh starts from, beside the model in use."""
        return self.models.in_use.path.with_suffix(".pt")

    def start(self, trigger: str, where: str | None = None) -> asyncio.Task[RefreshRecord]:
        """The refresh in progress, or a new one. Callers check :meth:`unavailable` first. ``trigger``:
        who started it (the audit log's operator, or "auto"); ``where``: the group or console client."""
        if not self.is_running():
            self.running_trigger = trigger
            self.running = asyncio.create_task(self._refresh(trigger, where))
        assert self.running is not None
        return self.running

    def is_running(self) -> bool:
        return self.running is not None and not self.running.done()

    def maybe_start_auto(self) -> asyncio.Task[RefreshRecord] | None:
        """In automatic mode, start a refresh when enough corrections are new and the last one is
        old enough; the task, or None."""
        config = self.config
        if not config.nailong_auto_refresh or self.is_running():
            return None
        last_started = self.last.started_at if self.last else 0.0
        if time.time() - last_started < config.nailong_auto_refresh_interval_hours * 3600:
            return None
        model_made = _timestamp(self.models.in_use.metadata.get("created_at"))
        if self.corrections_since(max(last_started, model_made)) < config.nailong_auto_refresh_corrections:
            return None
        reason = self.unavailable()
        if reason is not None:
            if not self._said_unavailable:
                missing = INSTALL_HINT if reason == "no_trainer" else f"{self.checkpoint} missing"
                logger.warning(f"自动更新模型无法运行 / automatic refresh cannot run: {missing}")
                self._said_unavailable = True
            return None
        return self.start("auto")

    async def auto_loop(self) -> None:
        while True:
            await asyncio.sleep(AUTO_CHECK_SECONDS)
            self.maybe_start_auto()

    async def stop(self) -> None:
        if self.is_running():
            assert self.running is not None
            self.running.cancel()
            await asyncio.gather(self.running, return_exceptions=True)

    @property
    def deadline_seconds(self) -> float:
        """How long the trainer may run before it is stopped: its budget and the grace period."""
        return self.config.nailong_refresh_budget_seconds + self.config.nailong_refresh_grace_seconds

    async def _refresh(self, trigger: str, where: str | None) -> RefreshRecord:
        started = time.time()
        base = self.models.in_use
        folder = self.models.candidates / time.strftime("%Y%m%d-%H%M%S", time.localtime(started))

        def ended(
            outcome: Outcome, message: str, gate: GateReport | None = None, gate_error: str | None = None
        ) -> RefreshRecord:
            return RefreshRecord(
                trigger=trigger,
                started_at=started,
                finished_at=time.time(),
                outcome=outcome,
                message=persist.without_paths(message),
                base_version=base.version,
                version=gate.version if gate else None,
                gate=gate,
                gate_error=gate_error,
                folder=str(folder),
            )

        logger.info(f"开始更新模型 / refresh started ({trigger}) from {base.version}, output in {folder}")
        await asyncio.to_thread(
            self.audit.record, trigger, "refresh-started", before={"model": base.version}, after=None, client=where
        )
        try:
            code, log_tail = await self._run_trainer(base, folder)
            record = await self._conclude(code, log_tail, base, folder, ended)
        except TrainerTimedOut:
            record = ended(
                "timed_out",
                f"训练程序超过 {self.deadline_seconds:.0f} 秒（时间预算加宽限）仍未结束，已终止，模型未变 / the trainer "
                f"was still running {self.deadline_seconds:.0f} s after it started (budget plus grace) and was "
                f"stopped; model kept.",
            )
        except OSError as error:
            logger.warning(f"无法运行训练程序 / the trainer could not be run: {persist.describe(error)}")
            record = ended("error", f"无法运行训练程序 / the trainer could not be run: {persist.describe(error)}")
        except Exception as error:  # a bug must cost this refresh, never the bot
            logger.exception("模型更新出错 / the refresh failed")
            record = ended("error", f"更新出错，模型未变，见日志 / the refresh failed, model kept (see the log): {error!r}")
        finally:
            self.running_trigger = None
        self.last = record
        try:
            await asyncio.to_thread(self._write_record, record)
        except OSError as error:
            logger.warning(f"无法保存更新记录 / could not save {self.record_path}: {persist.describe(error)}")
        log = logger.info if record.outcome == "passed" else logger.warning
        log(f"模型更新结束 / refresh ended: {record.outcome} ({folder}): {record.message}")
        await asyncio.to_thread(
            self.audit.record, trigger, "refresh-ended", before={"model": base.version},
            after={"outcome": record.outcome, "model": self.models.in_use.version, "candidate": record.version},
            client=where,
        )  # fmt: skip
        return record

    async def _conclude(self, code: int, log_tail: str, base: ModelInfo, folder: Path, ended) -> RefreshRecord:
        gate, gate_error = await asyncio.to_thread(self._read_gate, folder)
        if gate_error is not None:
            logger.warning(f"检查报告无法读取 / {folder / GATE_FILE} unreadable: {gate_error}")
        if code == ExitCode.GATE_FAILED and gate is not None:
            reasons = "；".join(gate.reasons) or "见 / see gate.md"
            return ended("failed", f"未通过检查，继续使用 {base.version} / The gate failed, {base.version} stays: {reasons}", gate)
        if code != ExitCode.GATE_PASSED or gate is None:
            if code == ExitCode.GATE_PASSED:
                what = GATE_UNREADABLE
            elif code == ExitCode.BAD_INPUT:
                what = "输入有误 / bad input"
            else:
                what = f"退出码 / exit code {code}"
            return ended(
                "error", f"训练程序出错（{what}），模型未变 / the trainer failed, model kept:\n{log_tail}", gate, gate_error
            )
        if self.models.in_use.version != base.version:
            return ended(
                "error",
                f"更新期间模型已切换为 {self.models.in_use.version}，结果未启用，请重新更新 / The model changed "
                f"during the refresh: the result is not used; refresh again.",
                gate,
            )
        try:
            info = await self.models.swap_in(folder)
        except ModelError as error:
            logger.warning(f"新模型未启用 / the new model was not swapped in: {error}")
            return ended("error", f"新模型未启用 / the new model was not swapped in: {error}", gate)
        return ended(
            "passed",
            f"新模型已启用 / new model in use: {base.version} → {info.version}（{gate.corrections} 条纠错 / corrections）",
            gate,
        )

    async def _run_trainer(self, base: ModelInfo, folder: Path) -> tuple[int, str]:
        """Run `trainer refresh` into ``folder``; its exit code and the last lines of its log.
        TrainerTimedOut when it ran past :attr:`deadline_seconds` (it is stopped then)."""
        config = self.config
        python = trainer_python(config)
        if python is None:
            raise OSError(INSTALL_HINT)
        base_folder = await asyncio.to_thread(self._prepare, base.path, folder)
        arguments = [
            "refresh",
            "--base", str(base_folder),
            "--feedback", str(self.corrections.feedback_dir),
            "--recent", str(self.data_dir / "recent"),
            "--out", str(folder),
            "--budget-seconds", str(config.nailong_refresh_budget_seconds),
            "--threads", str(config.nailong_refresh_threads),
        ]  # fmt: skip
        if config.nailong_refresh_config is not None:
            arguments += ["--config", str(config.nailong_refresh_config)]
        threads = str(config.nailong_refresh_threads)
        environment = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if in_checkout():
            environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_CHECKOUT), os.environ.get("PYTHONPATH")]))
        with await asyncio.to_thread((folder / TRAINER_LOG_FILE).open, "wb") as log:
            # A group of its own: stopping it stops whatever the trainer started (data loader workers).
            process = await asyncio.create_subprocess_exec(
                python, "-c", _LAUNCHER, str(config.nailong_refresh_nice), trainer_module(), *arguments,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                env=environment, cwd=folder, start_new_session=True,
            )  # fmt: skip
            try:
                code = await asyncio.wait_for(asyncio.shield(process.wait()), self.deadline_seconds)
            except TimeoutError:
                logger.warning(
                    f"训练程序超时，终止 / the trainer ran past {self.deadline_seconds:.0f} s: stopping it (pid {process.pid})"
                )
                await _stop_group(process)
                raise TrainerTimedOut from None
            except asyncio.CancelledError:
                await _stop_group(process)
                raise
        return code, await asyncio.to_thread(_tail, folder / TRAINER_LOG_FILE)

    @staticmethod
    def _prepare(model: Path, folder: Path) -> Path:
        """Make the output folder; return a folder with the model as nailong.onnx and its checkpoint as
        nailong.pt, as the trainer wants them."""
        folder.mkdir(parents=True, exist_ok=True)
        if model.name == MODEL_FILE:
            return model.parent
        base = folder.with_name(folder.name + ".base")
        base.mkdir(exist_ok=True)
        (base / MODEL_FILE).symlink_to(model.resolve())
        (base / CHECKPOINT_FILE).symlink_to(model.with_suffix(".pt").resolve())
        return base

    @staticmethod
    def _read_gate(folder: Path) -> tuple[GateReport | None, str | None]:
        """The candidate's gate report, and why it could not be read (None when it could or there is none)."""
        try:
            return GateReport.from_json((folder / GATE_FILE).read_bytes()), None
        except FileNotFoundError:
            return None, None
        except OSError as error:
            return None, persist.describe(error)
        except GateReportError as error:
            return None, str(error)

    def _read_record(self) -> RefreshRecord | None:
        try:
            return RefreshRecord.from_json(json.loads(self.record_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            logger.warning(f"上次更新的记录无法读取 / {self.record_path} unreadable: {error}")
            return None

    def _write_record(self, record: RefreshRecord) -> None:
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        persist.write_atomically(self.record_path, record.to_json().encode("utf-8"), durable=False)


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """Stop the trainer and every process in its group: SIGTERM (it saves its progress), then SIGKILL
    for whatever is left after STOP_SECONDS."""
    _signal_group(process, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), STOP_SECONDS)
    except TimeoutError:
        pass
    # Also the group's other members, whether or not the trainer itself has exited.
    _signal_group(process, signal.SIGKILL)
    await process.wait()


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the trainer leads its group: the group's id is its pid
    except ProcessLookupError:
        pass  # the group is gone already
