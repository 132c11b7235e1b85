"""The entity sprites: Noto Color Emoji rendered to RGBA PNGs (``tora2/data/sprites/``, see OFL.txt).

Each sprite's entity text is its Unicode name ("dog face", "red apple"). The split is fixed in
``sprites.json`` (written by ``scripts/render_sprites.py``): 20% of the sprites are "heldout" and
never used for training, so evaluation measures open-set generalisation. A third split, "extra"
(``tora2/data/sprites-extra/``, ``scripts/render_sprites.py --extra``: ≈ 1100 other emoji), holds
identities for the encoder stage's image–image term only: never in clips, captions or evaluation,
and not installed with the wheel.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tora2.errors import InputError

SPRITES_DIR = Path(__file__).resolve().parent.parent / "data" / "sprites"
EXTRA_SPRITES_DIR = SPRITES_DIR.parent / "sprites-extra"
SPLITS = ("train", "heldout", "extra")
# The splits that clips, captions and evaluation draw from; "extra" feeds only the encoder stage.
CLIP_SPLITS = ("train", "heldout")


@dataclass(frozen=True, eq=False)
class Sprite:
    """One entity sprite. ``image``: (h, w, 4) uint8 RGBA, trimmed to its alpha box, longer side 64."""

    name: str
    codepoint: str
    split: str
    path: Path
    image: np.ndarray
    plural: bool = False

    @property
    def text(self) -> str:
        """The entity phrase: the Unicode name with an article ("a dog face", "an octopus", "grapes")."""
        if self.plural:
            return self.name
        return f"{'an' if self.name[0] in 'aeiou' else 'a'} {self.name}"


def check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    """Refuse a split outside ``allowed`` (clips and evaluation pass ``CLIP_SPLITS``)."""
    if split not in allowed:
        raise InputError(f"split {split!r} is unknown; use one of {', '.join(allowed)}")


@functools.lru_cache(maxsize=4)
def _load_all(directory: str) -> tuple[Sprite, ...]:
    manifest = Path(directory) / "sprites.json"
    if not manifest.is_file():
        fix = "scripts/render_sprites.py --extra in a checkout" if Path(directory) == EXTRA_SPRITES_DIR else \
            "scripts/render_sprites.py or reinstall tora2"
        raise InputError(f"{manifest} not found; run {fix}")
    sprites = []
    for entry in json.loads(manifest.read_text(encoding="utf-8"))["sprites"]:
        path = Path(directory) / entry["file"]
        image = np.asarray(Image.open(path).convert("RGBA"))  # (h, w, 4)
        image.setflags(write=False)
        sprites.append(Sprite(entry["name"], entry["codepoint"], entry["split"], path, image, bool(entry.get("plural", False))))
    return tuple(sprites)


def load_sprites(split: str | None = None, directory: str | Path | None = None) -> list[Sprite]:
    """The sprites of one split ("train" / "heldout" / "extra"), or all train and held-out ones
    (``None``), in a fixed order. ``directory`` defaults to the split's folder."""
    if split is not None:
        check_split(split)
    if directory is None:
        directory = EXTRA_SPRITES_DIR if split == "extra" else SPRITES_DIR
    sprites = _load_all(str(directory))
    return [s for s in sprites if split is None or s.split == split]


def sprite_on_white(sprite: Sprite | np.ndarray) -> np.ndarray:
    """The reference crop convention of the entity pipeline: RGBA masked onto white, padded square → (S, S, 3)."""
    rgba = (sprite.image if isinstance(sprite, Sprite) else np.asarray(sprite)).astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # (h, w, 3)
    h, w = rgb.shape[:2]
    side = max(h, w)
    out = np.full((side, side, 3), 255.0, dtype=np.float32)
    out[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = rgb
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
