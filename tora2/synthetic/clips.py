"""One synthetic clip: 1–3 emoji sprites moving along random smooth paths over a background.

Glossary: F frames, H/W frame size, E entities. Points are pixel (x, y), x right, y down; an
entity's point is where the centre of its sprite's alpha box lands, exactly (sub-pixel), in that
frame. The sprite is scaled and rotated about that centre with a little jitter over time.

Path seeds: each entity's path is ``random_smooth(seed=path_seed)``. Training clips draw
``path_seed`` from [0, 2**31), held-out clips from [2**31, 2**32), so held-out paths are never seen
in training (the shapes are drawn from the same distribution; the exact curves are new).

Recolouring (``recolour=True``, training only): each entity, with probability ``RECOLOUR_SHARE``, is
drawn with its hue rotated by a random angle, in the frames and in its reference alike. With only
124 training sprites a model can memorise each one's look from its embedding and ignore the
reference; a recoloured sprite's colour is only in its reference, so reading the reference pays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from tora2.compositing import paste_sprite
from tora2.errors import InputError
from tora2.synthetic.backgrounds import KINDS, make_background
from tora2.synthetic.sprites import CLIP_SPLITS, Sprite, check_split
from tora2.trajectory.paths import random_smooth

PATH_SEED_RANGES = {"train": (0, 2**31), "heldout": (2**31, 2**32)}
SIZE_RANGE = (0.16, 0.26)  # sprite's longer side as a fraction of the frame's shorter side
SCALE_JITTER = 0.08  # ± relative size change over the clip
MAX_ROTATION = 12.0  # degrees, either way
MIN_SIZE = 8  # pixels: below this a sprite is unrecognisable
RECOLOUR_SHARE = 0.5  # with recolour=True: the share of entities drawn with a rotated hue


@dataclass
class SyntheticEntity:
    """One entity of a synthetic clip with its exact ground truth (sprite, path, size, angle per
    frame): what the clip generator and the evaluation score against; training sees it as an ``EntitySample``.

    points:  (F, 2) float64 pixel centre of the sprite per frame.
    visible: (F,) bool (the centre is always inside the frame here; the field keeps the manifest's shape).
    sizes:   (F,) float64 rendered longer side of the sprite in pixels.
    angles:  (F,) float64 rotation in degrees (counter-clockwise on screen).
    """

    id: str
    sprite: Sprite
    points: np.ndarray
    visible: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray
    path_seed: int

    @property
    def text(self) -> str:
        return self.sprite.text


def check_size(num_frames: int, height: int, width: int) -> None:
    if num_frames < 2:
        raise InputError(f"num_frames is {num_frames}; a clip needs at least 2 frames")
    if min(height, width) * SIZE_RANGE[0] < MIN_SIZE:
        raise InputError(f"frame size {height}x{width} (HxW) is too small for sprites; use at least {int(np.ceil(MIN_SIZE / SIZE_RANGE[0]))} pixels a side")


def describe_motion(points: np.ndarray, height: int, width: int) -> str:
    """Words for a path: "moves from left to right", "moves up", "moves around", "stays still"."""
    steps = np.diff(points, axis=0)
    length = float(np.hypot(steps[:, 0], steps[:, 1]).sum())
    dx, dy = points[-1] - points[0]
    side = min(height, width)
    if length < 0.05 * side:
        return "stays still"
    if np.hypot(dx, dy) < 0.35 * length or np.hypot(dx, dy) < 0.15 * side:
        return "moves around"
    horizontal = "from left to right" if dx > 0 else "from right to left"
    vertical = "down" if dy > 0 else "up"
    if abs(dx) > 2 * abs(dy):
        return f"moves {horizontal}"
    if abs(dy) > 2 * abs(dx):
        return f"moves {vertical}"
    start = f"{'top' if dy > 0 else 'bottom'} {'left' if dx > 0 else 'right'}"
    end = f"{'bottom' if dy > 0 else 'top'} {'right' if dx > 0 else 'left'}"
    return f"moves from the {start} to the {end}"


def make_caption(entities: list[SyntheticEntity], height: int, width: int) -> str:
    """"a dog face moves from left to right while a red apple moves around"."""
    parts = []
    for e in entities:
        motion = describe_motion(e.points, height, width)
        if e.sprite.plural:  # "grapes move", "grapes stay still"
            verb, rest = motion.split(" ", 1)
            motion = f"{verb[:-1]} {rest}"
        parts.append(f"{e.text} {motion}")
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return f"{parts[0]} while {parts[1]}"
    return f"{', '.join(parts[:-1])} and {parts[-1]}"


def draw_path_seed(rng: np.random.Generator, split: str) -> int:
    check_split(split, CLIP_SPLITS)
    low, high = PATH_SEED_RANGES[split]
    return int(rng.integers(low, high))


def make_entity(rng: np.random.Generator, sprite: Sprite, index: int, num_frames: int, height: int, width: int,
                split: str = "train") -> SyntheticEntity:
    side = min(height, width)
    base = rng.uniform(*SIZE_RANGE) * side
    t = np.linspace(0.0, 1.0, num_frames)
    sizes = base * (1.0 + rng.uniform(-SCALE_JITTER, SCALE_JITTER) * np.sin(2 * np.pi * (rng.uniform(0.3, 1.5) * t + rng.random())))
    angles = rng.uniform(-MAX_ROTATION, MAX_ROTATION) * np.sin(2 * np.pi * (rng.uniform(0.3, 1.5) * t + rng.random()))
    path_seed = draw_path_seed(rng, split)
    margin = min(0.45, 0.55 * sizes.max() / side)  # keep the whole sprite inside the frame
    points = random_smooth(num_frames, height, width, seed=path_seed, margin=margin)  # (F, 2)
    visible = np.ones(num_frames, dtype=bool)
    return SyntheticEntity(f"entity{index}", sprite, points, visible, sizes, angles, path_seed)


def rotate_hue(image: np.ndarray, degrees: float) -> np.ndarray:
    """(h, w, 4) uint8 RGBA → the same with every pixel's hue rotated by ``degrees``; alpha unchanged."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2HSV)  # OpenCV hue: 0..179 = 0..358°
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(degrees / 2.0))) % 180).astype(np.uint8)
    out = np.concatenate([cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), image[..., 3:]], axis=2)
    out.setflags(write=False)
    return out


def recolour_entities(rng: np.random.Generator, entities: list[SyntheticEntity]) -> list[SyntheticEntity]:
    """Each entity with probability RECOLOUR_SHARE gets its sprite's hue rotated by 30–330°."""
    out = []
    for e in entities:
        draw, angle = rng.random(), rng.uniform(30.0, 330.0)  # two draws per entity either way
        if draw < RECOLOUR_SHARE:
            e = replace(e, sprite=replace(e.sprite, image=rotate_hue(e.sprite.image, angle)))
        out.append(e)
    return out


def render_clip(background: np.ndarray, entities: list[SyntheticEntity]) -> np.ndarray:
    """Composite the entities (first below, last on top) over a static background → (F, H, W, 3) uint8."""
    num_frames = len(entities[0].points) if entities else 1
    frames = np.empty((num_frames,) + background.shape, dtype=np.uint8)
    for f in range(num_frames):
        frame = background.astype(np.float32)
        for e in entities:
            paste_sprite(frame, e.sprite.image, e.points[f], e.sizes[f], e.angles[f])
        frames[f] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return frames


def draw_clip(rng: np.random.Generator, sprites: list[Sprite], num_frames: int, height: int, width: int,
              num_entities: int, split: str = "train", background_kinds: tuple[str, ...] = KINDS,
              recolour: bool = False):
    """One clip's draws, before rendering → (background (H, W, 3) uint8, entities with exact per-frame
    centres and visibility); ``synthesize_clip`` renders them. Same arguments and draws."""
    check_size(num_frames, height, width)
    if not 1 <= num_entities <= len(sprites):
        raise InputError(f"num_entities is {num_entities}; use 1 to {len(sprites)} (the number of sprites given)")
    background, _ = make_background(rng, height, width, kinds=background_kinds)
    chosen = rng.choice(len(sprites), size=num_entities, replace=False)
    entities = [make_entity(rng, sprites[int(k)], i, num_frames, height, width, split) for i, k in enumerate(chosen)]
    if recolour:
        entities = recolour_entities(rng, entities)
    return background, entities


def synthesize_clip(rng: np.random.Generator, sprites: list[Sprite], num_frames: int, height: int, width: int,
                    num_entities: int, split: str = "train", background_kinds: tuple[str, ...] = KINDS,
                    recolour: bool = False):
    """One clip → (frames (F, H, W, 3) uint8, caption, entities with exact per-frame centres and visibility).

    ``num_entities`` distinct sprites are drawn from ``sprites``; ``split`` picks the path-seed range;
    ``recolour`` rotates some sprites' hues (module docstring; its draws come last, so the clip is
    otherwise the one drawn without it). Deterministic given ``rng``'s state.
    """
    background, entities = draw_clip(rng, sprites, num_frames, height, width, num_entities, split, background_kinds, recolour)
    return render_clip(background, entities), make_caption(entities, height, width), entities
