"""Decode: image bytes → a few RGB frames, safely.

Shared by the plugin and the trainer, so a model is trained on frames decoded exactly as the bot
decodes them in the chat.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from .preprocess import PreprocessSpec

# Pillow's own bomb check only warns below 2× its limit; we enforce an explicit cap instead.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Pixels one frame may decode to (after JPEG's reduced decode): a 4000×3000 picture, a phone's long
# screenshot. A PNG cannot be decoded smaller than it is, so this is what one costs in memory.
DEFAULT_MAX_PIXELS = 12_000_000
# Seeking to frame k of a GIF/WebP decodes every frame before it; this caps that work (≈1 s).
DEFAULT_MAX_DECODED_PIXELS = 200_000_000
# Pillow keeps 8-bit RGB, RGBA and 32-bit pixels in 4 bytes.
BYTES_PER_PIXEL = 4
# What decoding one large frame holds at once, per pixel: the frame as stored (a palette's 1 byte),
# in RGBA (4), and the premultiplied copy Image.reduce makes of it (4). An animation keeps the
# previous frame as well, for disposal (4 more).
_WORKING_BYTES_PER_PIXEL = 9
_ANIMATED_WORKING_BYTES_PER_PIXEL = 13
# Modes Image.reduce takes; others (palette, 1-bit, 16-bit) are converted first.
_REDUCIBLE = {"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I", "F"}


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


class ImageTooLarge(ImageDecodeError):
    """A whole image, with more pixels than the cap allows to decode."""


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


def shrink_factor(width: int, height: int, draft_size: int | None) -> int:
    """The whole factor a frame is box-reduced by on decode: the largest that keeps both sides at least
    twice ``draft_size``, so the final resize to the model's input looks the same as from the full
    frame (Pillow's reducing_gap of 2) and a large PNG costs its full size only until it is reduced."""
    return max(1, min(width, height) // (2 * draft_size)) if draft_size else 1


def decode_cost(width: int, height: int, n_frames: int, draft_size: int | None) -> int:
    """Bytes that decoding ``n_frames`` frames of width × height holds at most: the working copies of
    the frame being decoded, and the frames kept (reduced, see :func:`shrink_factor`)."""
    factor = shrink_factor(width, height, draft_size)
    kept = n_frames * -(-width // factor) * -(-height // factor) * BYTES_PER_PIXEL
    per_pixel = _ANIMATED_WORKING_BYTES_PER_PIXEL if n_frames > 1 else _WORKING_BYTES_PER_PIXEL
    return per_pixel * width * height + kept


def _reducible(frame: Image.Image) -> Image.Image:
    """The frame in a mode Image.reduce takes, converted no further than needed (a palette frame
    keeps its transparency, to be composited once it is small)."""
    if frame.mode in _REDUCIBLE:
        return frame
    if frame.mode in ("P", "PA"):
        return frame.convert("RGBA" if frame.mode == "PA" or "transparency" in frame.info else "RGB")
    if frame.mode.startswith("I;16"):
        return frame.convert("I")  # scaled to 8 bits by to_rgb once small (a float copy is 8 bytes a pixel)
    return to_rgb(frame)


def _shrunk(frame: Image.Image, draft_size: int | None) -> Image.Image:
    factor = shrink_factor(*frame.size, draft_size)
    return frame.reduce(factor) if factor > 1 else frame


def decode_frames(
    data: bytes,
    *,
    max_frames: int = PreprocessSpec.frames,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
    reserve: Callable[[int], None] | None = None,
) -> list[Image.Image]:
    """Decode ``data`` into 1..max_frames upright RGB frames (animated images sampled evenly).

    Upright: the EXIF orientation is applied, as every image viewer does, so a photo saved rotated
    (phones do) is seen the way people see it.

    ``draft_size`` lets JPEG decode at a reduced scale that is still at least that size: a large
    photo decodes several times faster and the model sees the same pixels after resizing (the
    orientation is applied after, to the reduced frame). Other formats decode whole, and each frame
    is then box-reduced (:func:`shrink_factor`) before anything else is done with it.
    ``max_pixels`` caps the pixels of a frame as decoded (after JPEG's reduction): above it the
    image is refused with :class:`ImageTooLarge`, before any pixel is decoded.
    An animation too long to decode within ``max_decoded_pixels`` is sampled from its beginning
    only (a tiny file can hold thousands of large frames).
    ``reserve`` is called with :func:`decode_cost` once the header is read and before any pixel is
    decoded; it may block, e.g. to wait for room in a memory budget shared by threads.
    Raises :class:`ImageDecodeError` for anything that is not a whole, reasonably sized image.
    """
    if not data:
        raise ImageDecodeError("empty file / 空文件")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            stored = image.size
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"image too large / 图片过大: {stored[0]}x{stored[1]}, {width * height:,} pixels to decode "
                    f"> {max_pixels:,}"
                )
            affordable = max(1, max_decoded_pixels // max(1, width * height))
            n_frames = min(getattr(image, "n_frames", 1), affordable)
            indices = sample_frame_indices(n_frames, max_frames)
            if reserve is not None:
                reserve(decode_cost(width, height, len(indices) if n_frames > 1 else 1, draft_size))
            upright = _UPRIGHT.get(_orientation(image))
            frames = []
            for index in indices:
                image.seek(index)
                image.load()
                frame = to_rgb(_shrunk(_reducible(image), draft_size))
                frames.append(frame if upright is None else frame.transpose(upright))
            return frames
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not an image / 不是图片") from error
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"broken image / 图片损坏: {error}") from error
