import csv

import optuna
import pytest
import yaml

from trainer.config import load_config
from trainer.search import load_space, run_search

from .conftest import tiny_config


def test_two_trial_search_on_sqlite_resumes(tmp_path, image_root):
    base = tiny_config(tmp_path, image_root, "max_steps=2", "eval_every=1", "save_every=100")
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump(base.to_dict()))
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
                     "batch_size: {type: categorical, choices: [4, 8]}\n"
                     "augment.hflip: {type: float, low: 0.0, high: 1.0}\n")
    out = tmp_path / "search"

    first = run_search(str(config), str(space), 1, None, "s", str(out))
    assert len(first.trials) == 1
    # Running again with --trials 2 continues the same SQLite study instead of starting over.
    second = run_search(str(config), str(space), 2, None, "s", str(out))
    assert [t.number for t in second.trials] == [0, 1]
    assert (out / "study.db").exists()
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}").best_value >= 0.0
    with (out / "trials.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2
    best = load_config(out / "best.yaml")
    assert best.batch_size in (4, 8)
    assert best.learning_rate == second.best_params["learning_rate"]
    assert best.augment.hflip == second.best_params["augment.hflip"]


def test_bad_search_space_is_a_clear_error(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {type: float, low: 0.1}\n")
    with pytest.raises(ValueError, match="low and high"):
        load_space(space)
    space.write_text("learning_rate: {type: uniform, low: 0.1, high: 1}\n")
    with pytest.raises(ValueError, match="type must be"):
        load_space(space)
