import pytest

from trainer.config import config_from_dict, load_config


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("learning_rate: 0.01\nbetas: [0.8, 0.9]\naugment: {hflip: 0.0}\n")
    cfg = load_config(path, ["max_steps=12", "augment.color_mask=0.5", "data=['a', 'b']", "min_lr=0"])
    assert cfg.learning_rate == 0.01 and cfg.betas == (0.8, 0.9)
    assert cfg.augment.hflip == 0.0 and cfg.augment.color_mask == 0.5
    assert cfg.max_steps == 12 and cfg.data == ["a", "b"] and cfg.min_lr == 0.0
    assert config_from_dict(cfg.to_dict()) == cfg


def test_shipped_configs_load():
    names = ("shipped", "shipped-stage2", "shipped-stage3", "shipped-stage4")
    stages = [load_config(f"configs/{name}.yaml") for name in names]
    assert all(cfg.model == "convnext_atto" for cfg in stages)
    assert [cfg.image_size for cfg in stages] == [160, 160, 224, 224]
    assert len({cfg.split_seed for cfg in stages}) == 1  # one validation split across the stages
    assert stages[2].exclude == stages[3].exclude and len(stages[3].exclude) == 6  # the README's wrong labels
    assert stages[3].init_checkpoint == "runs/shipped-stage3/checkpoints/best.pt"


@pytest.mark.parametrize("override", ["nope=1", "augment.nope=1", "max_steps"])
def test_unknown_or_malformed_keys_are_rejected(override):
    with pytest.raises(ValueError):
        load_config(None, [override])
