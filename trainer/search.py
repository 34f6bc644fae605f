"""search: optuna over a YAML search space, maximising validation nailong F1 (at its best threshold).

The space keeps the original format: one entry per config key (``augment.hflip`` for nested
keys) with ``type`` float | int | categorical, ``low``/``high`` (+ ``log``, ``step``) or
``choices``. The study lives in a database (SQLite by default), so an interrupted search resumes
and several machines can share one study through a PostgreSQL/MySQL URL.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import yaml

from .config import load_config
from .loop import train

log = logging.getLogger(__name__)


def load_space(path: str | Path) -> dict[str, dict]:
    space = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for name, spec in space.items():
        kind = spec.get("type")
        if kind in ("float", "int") and not {"low", "high"} <= set(spec):
            raise ValueError(f"search space {name}: {kind} needs low and high")
        if kind == "categorical" and not spec.get("choices"):
            raise ValueError(f"search space {name}: categorical needs choices")
        if kind not in ("float", "int", "categorical"):
            raise ValueError(f"search space {name}: type must be float, int or categorical, not {kind!r}")
    return space


def suggest(trial: optuna.Trial, space: dict[str, dict]) -> dict:
    params = {}
    for name, spec in space.items():
        if spec["type"] == "float":
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                               log=bool(spec.get("log", False)), step=spec.get("step"))
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                             log=bool(spec.get("log", False)), step=int(spec.get("step", 1)))
        else:
            params[name] = trial.suggest_categorical(name, spec["choices"])
    return params


def as_overrides(params: dict) -> list[str]:
    return [f"{name}={json.dumps(value)}" for name, value in params.items()]


def run_search(config: str, space_path: str, trials: int, storage: str | None, study_name: str, out: str,
               overrides: list[str] = ()) -> optuna.Study:
    """Run trials until the study holds ``trials`` finished ones (so re-running resumes)."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    space = load_space(space_path)
    storage = storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=load_config(config, list(overrides)).seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        trial_dir = out_dir / f"trial-{trial.number:03d}"
        cfg = load_config(config, [*overrides, *as_overrides(params),
                                   f"checkpoint_dir={trial_dir / 'checkpoints'}",
                                   f"tensorboard_dir={trial_dir / 'tensorboard'}"])

        def report(step: int, metrics: dict) -> None:
            trial.report(metrics["nailong_best_f1"], step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        return train(cfg, on_eval=report).best_metric

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    write_results(study, config, overrides, out_dir)
    return study


def write_results(study: optuna.Study, config: str, overrides: list[str], out_dir: Path) -> None:
    """trials.csv, and best.yaml: the base config with the best parameters, ready for ``train``."""
    study.trials_dataframe().to_csv(out_dir / "trials.csv", index=False)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        log.warning("no completed trial yet: no best.yaml written")
        return
    best = study.best_trial
    cfg = load_config(config, [*overrides, *as_overrides(best.params),
                               f"checkpoint_dir={out_dir / 'best' / 'checkpoints'}",
                               f"tensorboard_dir={out_dir / 'best' / 'tensorboard'}"])
    header = f"# best of study {study.study_name!r}: trial {best.number}, nailong F1 {best.value:.4f}\n"
    (out_dir / "best.yaml").write_text(header + yaml.safe_dump(cfg.to_dict(), allow_unicode=True, sort_keys=False),
                                       encoding="utf-8")
    log.info("best trial %d: nailong F1 %.4f with %s → %s", best.number, best.value, best.params, out_dir / "best.yaml")
