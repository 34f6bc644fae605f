"""Refresh: the model learns the admins' corrections without a maintainer.

The trainer's `refresh` command fine-tunes the model in use on the corrections in a subprocess at low
CPU priority (one thread by default); its gate checks the candidate, and one that passes is swapped
in (:class:`~nailong_bot.models.Models`). The bot keeps guarding meanwhile: the subprocess is awaited
on the event loop, never waited for in it. torch is never imported here: the trainer runs in
NAILONG_TRAINER_PYTHON, by default the bot's own interpreter when torch is installed there.

Started by `/nailong refresh`, the console's button, or on its own (NAILONG_AUTO_REFRESH) once
NAILONG_AUTO_REFRESH_CORRECTIONS corrections are newer than the model and the last refresh, at most
once per NAILONG_AUTO_REFRESH_INTERVAL_HOURS. One refresh runs at a time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from nonebot.log import logger

from nailong_vision.classifier import MODEL_FILE, ModelError, ModelInfo

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
CHECKPOINT_FILE = "nailong.pt"
GATE_FILE = "gate.json"
LOG_FILE = "refresh.log"
# `trainer refresh` exit codes: the gate passed, the gate failed, bad input (anything else: an error).
GATE_PASSED, GATE_FAILED, BAD_INPUT = 0, 3, 2
# How often automatic mode counts the new corrections.
AUTO_CHECK_SECONDS = 60.0
_LOG_TAIL_LINES = 5
# Lowers the trainer's priority before it imports anything, so every thread torch starts inherits it;
# then runs `python -m <module>` with the remaining arguments.
_LAUNCHER = (
    "import os, runpy, sys; niceness = int(sys.argv.pop(1)); hasattr(os, 'nice') and os.nice(niceness); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)
# Where a checkout of the project keeps the trainer, beside this plugin.
_CHECKOUT = Path(__file__).resolve().parent.parent

Outcome = Literal["passed", "failed", "error"]


@dataclass(frozen=True)
class RefreshRecord:
    """One refresh as it ended: kept in last_refresh.json and shown by `/nailong model` and the console."""

    trigger: str  # "auto", or the operator who started it ("qq:10001 (小王)", "web:阿龙")
    started_at: float  # wall-clock seconds
    finished_at: float
    outcome: Outcome
    message: str  # one paragraph, Chinese / English
    base_version: str
    version: str | None = None  # the candidate's version, when the trainer got that far
    gate: dict | None = None  # the trainer's gate.json
    folder: str | None = None  # where the candidate, its gate report and the trainer's log are

    @classmethod
    def from_json(cls, raw: dict) -> RefreshRecord:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


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
        if self.running is None or self.running.done():
            self.running_trigger = trigger
            self.running = asyncio.create_task(self._refresh(trigger, where))
        return self.running

    def maybe_start_auto(self) -> asyncio.Task[RefreshRecord] | None:
        """In automatic mode, start a refresh when enough corrections are new and the last one is
        old enough; the task, or None."""
        config = self.config
        if not config.nailong_auto_refresh or (self.running is not None and not self.running.done()):
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
        if self.running is not None and not self.running.done():
            self.running.cancel()
            await asyncio.gather(self.running, return_exceptions=True)

    async def _refresh(self, trigger: str, where: str | None) -> RefreshRecord:
        started = time.time()
        base = self.models.in_use
        folder = self.models.candidates / time.strftime("%Y%m%d-%H%M%S", time.localtime(started))

        def ended(outcome: Outcome, message: str, gate: dict | None = None) -> RefreshRecord:
            return RefreshRecord(
                trigger=trigger,
                started_at=started,
                finished_at=time.time(),
                outcome=outcome,
                message=message,
                base_version=base.version,
                version=gate.get("version") if gate else None,
                gate=gate,
                folder=str(folder),
            )

        logger.info(f"开始更新模型 / refresh started ({trigger}) from {base.version}, output in {folder}")
        await asyncio.to_thread(
            self.audit.record, trigger, "refresh-started", before={"model": base.version}, after=None, client=where
        )
        try:
            code, log_tail = await self._run_trainer(base, folder)
            record = await self._conclude(code, log_tail, base, folder, ended)
        except OSError as error:
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
        log(f"模型更新结束 / refresh ended: {record.outcome}: {record.message}")
        await asyncio.to_thread(
            self.audit.record, trigger, "refresh-ended", before={"model": base.version},
            after={"outcome": record.outcome, "model": self.models.in_use.version, "candidate": record.version},
            client=where,
        )  # fmt: skip
        return record

    async def _conclude(self, code: int, log_tail: str, base: ModelInfo, folder: Path, ended) -> RefreshRecord:
        gate = await asyncio.to_thread(self._read_gate, folder)
        if code == GATE_FAILED and gate is not None:
            reasons = "；".join(gate.get("reasons") or []) or "见 / see gate.md"
            return ended("failed", f"未通过检查，继续使用 {base.version} / The gate failed, {base.version} stays: {reasons}", gate)
        if code != GATE_PASSED or gate is None:
            what = "输入有误 / bad input" if code == BAD_INPUT else f"退出码 / exit code {code}"
            return ended("error", f"训练程序出错（{what}），模型未变 / the trainer failed, model kept:\n{log_tail}", gate)
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
            return ended("error", f"新模型未启用 / the new model was not swapped in: {error}", gate)
        return ended(
            "passed",
            f"新模型已启用 / new model in use: {base.version} → {info.version}（{gate.get('corrections')} 条纠错 / corrections）",
            gate,
        )

    async def _run_trainer(self, base: ModelInfo, folder: Path) -> tuple[int, str]:
        """Run `trainer refresh` into ``folder``; its exit code and the last lines of its log."""
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
        with await asyncio.to_thread((folder / LOG_FILE).open, "wb") as log:
            process = await asyncio.create_subprocess_exec(
                python, "-c", _LAUNCHER, str(config.nailong_refresh_nice), trainer_module(), *arguments,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                env=environment, cwd=folder,
            )  # fmt: skip
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                process.kill()
                await process.wait()
                raise
        return code, await asyncio.to_thread(_tail, folder / LOG_FILE)

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
    def _read_gate(folder: Path) -> dict | None:
        try:
            gate = json.loads((folder / GATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return gate if isinstance(gate, dict) else None

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
        text = json.dumps(asdict(record), ensure_ascii=False, indent=2)
        persist.write_atomically(self.record_path, text.encode("utf-8"), durable=False)
