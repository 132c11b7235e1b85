"""Varied clip backgrounds: colour gradients, textures, smooth noise and a few photographs.

The photographs come from scikit-image's bundled sample data and are all free of copyright
restrictions (skimage docs): ``astronaut`` (NASA, public domain), ``coffee`` (CC0, Rachel
Michetti), ``chelsea`` (CC0, Stefan van der Walt), ``rocket`` (SpaceX, public domain),
``hubble_deep_field`` (NASA, public domain). They are read once and kept in memory.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from tora2.errors import InputError

KINDS = ("gradient", "texture", "noise", "photo")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
KIND_WEIGHTS = (0.3, 0.3, 0.25, 0.15)  # photos are few, so they are drawn less often


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data

    return tuple(np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in PHOTOS)


def _colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(40, 200), rng.integers(80, 250)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)  # (3,)


def gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (x * np.cos(angle) + y * np.sin(angle))
    u = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)  # (H, W) in [0, 1]
    a, b = _colour(rng), _colour(rng)
    return a + u[..., None] * (b - a)  # (H, W, 3)


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Stripes, checks or ripples in two colours, softened."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(0.08, 0.3) * min(height, width)
    pattern = int(rng.integers(0, 3))
    angle = rng.uniform(0, np.pi)
    u = (x * np.cos(angle) + y * np.sin(angle)) / period
    v = (-x * np.sin(angle) + y * np.cos(angle)) / period
    if pattern == 0:  # stripes
        m = 0.5 + 0.5 * np.sin(2 * np.pi * u)
    elif pattern == 1:  # checks
        m = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    else:  # ripples
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        m = 0.5 + 0.5 * np.sin(2 * np.pi * np.hypot(x - cx, y - cy) / period)
    m = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 1.0)
    a, b = _colour(rng), _colour(rng)
    return a + m[..., None] * (b - a)


def noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth colour noise: a coarse random grid upsampled, plus a little fine grain."""
    cells = int(rng.integers(3, 9))
    coarse = rng.uniform(40, 230, size=(cells, cells, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return smooth + rng.normal(0, 6, size=(height, width, 3)).astype(np.float32)


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop (at least half of the photo's shorter side) of one photo, resized to the frame."""
    image = _photos()[int(rng.integers(0, len(PHOTOS)))]
    ih, iw = image.shape[:2]
    aspect = width / height
    crop_h = int(rng.uniform(0.5, 1.0) * min(ih, iw / aspect))
    crop_w = min(iw, int(round(crop_h * aspect)))
    y0, x0 = int(rng.integers(0, ih - crop_h + 1)), int(rng.integers(0, iw - crop_w + 1))
    crop = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)


GENERATORS = {"gradient": gradient, "texture": texture, "noise": noise, "photo": photo}


def make_background(rng: np.random.Generator, height: int, width: int, kind: str | None = None,
                    kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, str]:
    """One background → ((H, W, 3) uint8, its kind). ``kind=None`` draws one of ``kinds`` at random."""
    for k in (kind,) if kind is not None else kinds:
        if k not in GENERATORS:
            raise InputError(f"background kind {k!r} is unknown; use one of {', '.join(KINDS)}")
    if kind is None:
        weights = np.array([KIND_WEIGHTS[KINDS.index(k)] for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    image = GENERATORS[kind](rng, height, width)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), kind
