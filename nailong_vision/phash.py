"""Perceptual hash (64-bit DCT pHash): near-identical images get hashes a few bits apart.

Used by the trainer to keep near-duplicate frames on one side of the validation split, and by the
plugin to apply an admin's correction to re-encoded or resized reposts of the same image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_SIDE = 32
_KEEP = 8
# Below this spread of grey levels (0..255, 32×32 thumbnail) a pHash is rounding noise.
_FLAT_STD = 2.0


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(_SIDE)


def phash(image: Image.Image) -> int:
    """64-bit perceptual hash of an image (greyscale 32×32 DCT, low 8×8 band above its median)."""
    return _hash(_grey(image))


def frame_hash(frame: Image.Image) -> int | None:
    """pHash of a frame, or None when the frame is too flat for a pHash to tell images apart (solid
    colours all hash alike: such images are matched by their bytes only)."""
    grey = _grey(frame)
    return None if grey.std() < _FLAT_STD else _hash(grey)


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.BILINEAR), dtype=np.float64)


def _hash(grey: np.ndarray) -> int:
    low = (_DCT @ grey @ _DCT.T)[:_KEEP, :_KEEP].ravel()
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()
