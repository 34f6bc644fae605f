"""Decode: image bytes → a few RGB frames, safely.

Shared by the plugin and the trainer, so a model is trained on frames decoded exactly as the bot
decodes them in the chat.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from .preprocess import PreprocessSpec

# Pillow's own bomb check only warns below 2× its limit; we enforce an explicit cap instead.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 40_000_000
# Seeking to frame k of a GIF/WebP decodes every frame before it; this caps that work (≈1 s).
DEFAULT_MAX_DECODED_PIXELS = 200_000_000


# EXIF orientation → the transpose that shows the image upright (the table of ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageDecodeError(ValueError):
    """The bytes are not an image we can safely decode (not an image, truncated, too large)."""


def sample_frame_indices(n_frames: int, max_frames: int) -> list[int]:
    """Up to ``max_frames`` indices spread evenly from the first to the last frame."""
    if n_frames <= max_frames:
        return list(range(n_frames))
    return sorted({int(i) for i in np.linspace(0, n_frames - 1, max_frames).round()})


def to_rgb(frame: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB; transparency is composited on white (stickers are mostly transparent)."""
    if frame.mode == "P" and "transparency" in frame.info:
        frame = frame.convert("RGBA")
    if frame.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = frame.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if frame.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clip everything to white.
        array = np.asarray(frame, dtype=np.float64)
        peak = array.max() or 1.0
        return Image.fromarray((array * (255.0 / peak)).astype(np.uint8)).convert("RGB")
    return frame.convert("RGB")


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: as stored; Pillow reads a damaged EXIF block as empty)."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation if isinstance(orientation, int) else 1


def decode_frames(
    data: bytes,
    *,
    max_frames: int = PreprocessSpec.frames,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
) -> list[Image.Image]:
    """Decode ``data`` into 1..max_frames upright RGB frames (animated images sampled evenly).

    Upright: the EXIF orientation is applied, as every image viewer does, so a photo saved rotated
    (phones do) is seen the way people see it.

    ``draft_size`` lets JPEG decode at a reduced scale that is still at least that size: a large
    photo decodes several times faster and the model sees the same pixels after resizing (the
    orientation is applied after, to the reduced frame).
    An animation too long to decode within ``max_decoded_pixels`` is sampled from its beginning
    only (a tiny file can hold thousands of large frames).
    Raises :class:`ImageDecodeError` for anything that is not a whole, reasonably sized image.
    """
    if not data:
        raise ImageDecodeError("empty file / 空文件")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"image too large / 图片过大: {width}x{height} > {max_pixels} pixels"
                )
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            affordable = max(1, max_decoded_pixels // max(1, width * height))
            n_frames = min(getattr(image, "n_frames", 1), affordable)
            upright = _UPRIGHT.get(_orientation(image))
            frames = []
            for index in sample_frame_indices(n_frames, max_frames):
                image.seek(index)
                image.load()
                frame = to_rgb(image)
                frames.append(frame if upright is None else frame.transpose(upright))
            return frames
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not an image / 不是图片") from error
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"broken image / 图片损坏: {error}") from error
