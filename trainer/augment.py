"""Training augmentations on one image: float tensors [3, H, W] in 0..1, randomness from ``rng``.

Each is a small pure function so it can be tested alone; :func:`augment` chains them as the
config says. Every random choice comes from the sample's own numpy Generator, so a sample's
augmentation depends only on (seed, position in the run) — resumed runs see identical batches.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
import torch.nn.functional as F

from .config import AugmentConfig


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def random_resized_crop(image: torch.Tensor, size: int, scale_min: float, rng: np.random.Generator) -> torch.Tensor:
    """Crop a random box of scale_min..1 of the area (aspect 3:4..4:3) and resize it to size×size."""
    _, height, width = image.shape
    area = height * width * rng.uniform(scale_min, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w = int(round(min(width, np.sqrt(area * aspect))))
    crop_h = int(round(min(height, np.sqrt(area / aspect))))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return resize(image[:, top : top + crop_h, left : left + crop_w], size)


def hflip(image: torch.Tensor) -> torch.Tensor:
    return image.flip(-1)


def rotate90(image: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    return torch.rot90(image, quarter_turns, dims=(-2, -1))


def mirror_half(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Replace one half of the image with the mirror of the other (a common meme edit)."""
    width = image.shape[-1]
    half = width // 2
    out = image.clone()
    if rng.random() < 0.5:
        out[..., width - half :] = image[..., :half].flip(-1)
    else:
        out[..., :half] = image[..., width - half :].flip(-1)
    return out


def color_mask(image: torch.Tensor, color: tuple[float, float, float], alpha: float) -> torch.Tensor:
    """Blend a solid colour over the whole image: yellow negatives and recoloured nailong teach
    the model that colour alone does not decide the label."""
    tint = torch.tensor(color, dtype=image.dtype).view(3, 1, 1)
    return image * (1 - alpha) + tint * alpha


def random_color(rng: np.random.Generator, yellow: bool) -> tuple[float, float, float]:
    hue = rng.uniform(0.11, 0.17) if yellow else rng.random()
    return colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0))


def paste(image: torch.Tensor, patch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Paste ``patch`` (resized to 35–65% of the side) at a random place in ``image``."""
    side = image.shape[-1]
    patch_side = max(8, int(side * rng.uniform(0.35, 0.65)))
    patch = resize(patch, patch_side)
    top = int(rng.integers(0, side - patch_side + 1))
    left = int(rng.integers(0, side - patch_side + 1))
    out = image.clone()
    out[:, top : top + patch_side, left : left + patch_side] = patch
    return out


def grayscale(image: torch.Tensor) -> torch.Tensor:
    grey = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    return grey.expand(3, -1, -1).clone()


def mix(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (even odds) of a batch with itself in a random order.

    ``targets`` are class probabilities [N, C]; they are mixed in the same proportion as the pixels."""
    order = torch.from_numpy(rng.permutation(len(images)))
    keep = float(rng.beta(1.0, 1.0))
    if rng.random() < 0.5:
        mixed = images * keep + images[order] * (1 - keep)
    else:
        side_h, side_w = images.shape[-2:]
        cut_h, cut_w = int(side_h * np.sqrt(1 - keep)), int(side_w * np.sqrt(1 - keep))
        top, left = int(rng.integers(0, side_h - cut_h + 1)), int(rng.integers(0, side_w - cut_w + 1))
        mixed = images.clone()
        mixed[..., top : top + cut_h, left : left + cut_w] = images[order][..., top : top + cut_h, left : left + cut_w]
        keep = 1 - cut_h * cut_w / (side_h * side_w)
    return mixed, targets * keep + targets[order] * (1 - keep)


def color_jitter(image: torch.Tensor, strength: float, rng: np.random.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation, each by a factor in 1±strength."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    image = image * brightness
    image = (image - image.mean()) * contrast + image.mean()
    grey = grayscale(image)
    image = (image - grey) * saturation + grey
    return image.clamp(0, 1)


def augment(
    image: torch.Tensor,
    is_positive: bool,
    size: int,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    positive_patch=None,
) -> tuple[torch.Tensor, bool]:
    """One training view of ``image``; returns it and whether it now shows nailong.

    ``positive_patch`` is a callable returning a random nailong image, for the paste augmentation.
    """
    image = random_resized_crop(image, size, cfg.crop_scale_min, rng)
    if not is_positive and positive_patch is not None and rng.random() < cfg.paste_nailong:
        patch = random_resized_crop(positive_patch(rng), size, 0.3, rng)
        image, is_positive = paste(image, patch, rng), True
    if rng.random() < cfg.hflip:
        image = hflip(image)
    if rng.random() < cfg.vflip:
        image = image.flip(-2)
    if rng.random() < cfg.rotate90:
        image = rotate90(image, int(rng.integers(1, 4)))
    if rng.random() < cfg.mirror_half:
        image = mirror_half(image, rng)
    if rng.random() < cfg.color_mask:
        yellow = not is_positive and rng.random() < cfg.color_mask_yellow
        image = color_mask(image, random_color(rng, yellow), rng.uniform(0.25, 0.6))
    if rng.random() < cfg.color_jitter:
        image = color_jitter(image, cfg.jitter_strength, rng)
    if rng.random() < cfg.grayscale:
        image = grayscale(image)
    return image, is_positive
