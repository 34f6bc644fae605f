import numpy as np
import pytest
import torch

from trainer import augment as aug
from trainer.config import AugmentConfig


def image(height=40, width=40, seed=0):
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def rng(seed=0):
    return np.random.default_rng(seed)


def test_random_resized_crop_size_and_determinism():
    source = image(60, 50)
    first = aug.random_resized_crop(source, 24, 0.3, rng(1))
    assert first.shape == (3, 24, 24)
    assert torch.equal(first, aug.random_resized_crop(source, 24, 0.3, rng(1)))
    assert not torch.equal(first, aug.random_resized_crop(source, 24, 0.3, rng(2)))


def test_full_scale_crop_of_square_keeps_content():
    source = image(24, 24)
    out = aug.random_resized_crop(source, 24, 1.0, np.random.default_rng(0))
    # A full-area crop with aspect ≠ 1 is clipped to the image: the result still resembles the source.
    assert torch.mean(torch.abs(out - source)) < 0.35


def test_hflip_reverses_columns():
    source = image()
    assert torch.equal(aug.hflip(source)[:, :, 0], source[:, :, -1])


def test_mirror_half_makes_image_symmetric():
    out = aug.mirror_half(image(20, 20), rng(3))
    assert torch.equal(out, out.flip(-1))


def test_color_mask_blends_towards_colour():
    source = image()
    solid = aug.color_mask(source, (1.0, 1.0, 0.0), 1.0)
    assert torch.allclose(solid[0], torch.ones_like(solid[0])) and torch.allclose(solid[2], torch.zeros_like(solid[2]))
    half = aug.color_mask(source, (1.0, 1.0, 0.0), 0.5)
    assert torch.allclose(half, source * 0.5 + torch.tensor([0.5, 0.5, 0.0]).view(3, 1, 1))


def test_yellow_random_colour_is_yellow():
    red, green, blue = aug.random_color(rng(4), yellow=True)
    assert red > blue and green > blue


def test_paste_puts_the_patch_inside():
    background = torch.zeros(3, 32, 32)
    patch = torch.ones(3, 10, 10)
    out = aug.paste(background, patch, rng(5))
    covered = (out.sum(0) > 2.9).sum().item()
    side_min, side_max = int(32 * 0.35), int(32 * 0.65)
    assert side_min**2 <= covered <= side_max**2
    assert torch.equal(out.clamp(0, 1), out)


def test_grayscale_has_equal_channels():
    out = aug.grayscale(image())
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_color_jitter_changes_and_clamps():
    source = image()
    out = aug.color_jitter(source, 0.5, rng(6))
    assert not torch.equal(out, source)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("is_positive", [True, False])
def test_augment_paste_turns_negative_positive(is_positive):
    cfg = AugmentConfig(paste_nailong=1.0, hflip=0, mirror_half=0, color_mask=0, color_jitter=0, grayscale=0)
    out, positive = aug.augment(image(), is_positive, 24, cfg, rng(7), positive_patch=lambda r: image(seed=9))
    assert out.shape == (3, 24, 24)
    assert positive is True


def test_augment_switched_off_is_only_the_crop():
    cfg = AugmentConfig(paste_nailong=0, hflip=0, mirror_half=0, color_mask=0, color_jitter=0, grayscale=0)
    source = image()
    out, positive = aug.augment(source, False, 24, cfg, rng(8))
    assert positive is False
    assert torch.equal(out, aug.random_resized_crop(source, 24, cfg.crop_scale_min, rng(8)))


def test_rotations_and_flips_turn_the_crop_without_changing_it():
    source = image(20, 20)
    plain = AugmentConfig(crop_scale_min=1.0, hflip=0, mirror_half=0, color_mask=0, paste_nailong=0, color_jitter=0,
                          grayscale=0, rotate90=0.0, vflip=0.0)
    turned = AugmentConfig(**{**plain.__dict__, "rotate90": 1.0, "vflip": 1.0})
    crop, _ = aug.augment(source, True, 20, plain, rng(3))
    out, _ = aug.augment(source, True, 20, turned, rng(3))
    assert any(torch.equal(out, aug.rotate90(crop.flip(-2), k)) for k in (1, 2, 3))
    assert torch.equal(aug.rotate90(aug.rotate90(source, 1), 3), source)


def test_mix_blends_pixels_and_targets_in_the_same_proportion():
    images = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for seed in range(8):
        mixed, soft = aug.mix(images, targets, rng(seed))
        assert torch.allclose(soft.sum(1), torch.ones(2))
        # Image 0 is all zeros and image 1 all ones: the mean pixel is the share of image 1 in the mix.
        assert torch.allclose(mixed.mean(dim=(1, 2, 3)), soft[:, 1], atol=1e-5)
