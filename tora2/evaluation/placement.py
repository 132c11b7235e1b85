"""Placement agreement: is each entity drawn where it was asked to be, without a tracker?

The tracker (``tora2.evaluation.tracker``) finds a sprite by matching its reference as a template;
a sprite drawn on its path but paler, smaller or softer than the reference can score as lost. This
check needs no template match. It takes the backdrop the video drew (per frame and colour, a
quadratic surface fitted away from the entities: ``backdrop_clip``), pastes the case's sprites on it
at their requested points, sizes and angles (``sprites_on``: the clip that was asked for, on the
video's own background), and compares where the video and that target differ from the backdrop
(``placement_agreement``). ``scripts/decoder_pairs.py`` uses the same three to make a decoder's
targets and to keep the pairs whose sprites landed.
"""

from __future__ import annotations

import numpy as np

from tora2.compositing import paste_sprite


def sprites_on(backdrop: np.ndarray, entities) -> np.ndarray:
    """(F, H, W, 3) float backdrop → (F, H, W, 3) uint8 with the entities' sprites at their exact
    points, sizes and angles (the backdrop itself is left as it is)."""
    frames = backdrop.copy()
    for f in range(len(frames)):
        for e in entities:  # first below, last on top, as the renders
            paste_sprite(frames[f], e.sprite.image, e.points[f], e.sizes[f], e.angles[f])
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def placement_agreement(generated: np.ndarray, entities, backdrop: np.ndarray | None = None,
                        keep: float = 0.21) -> np.ndarray:
    """How closely each entity's drawn shape matches its target where it was asked to be: (E,) in [−1, 1].

    Per frame, the contrast maps |frame − backdrop| (summed over colour) of the generated frames and
    of the target are compared by normalised cross-correlation inside a square of 2 × max(sprite
    size, ``keep`` × side) around the entity's point; the entity's value is the median over the
    frames where it is visible.
    A sprite drawn at its point scores high even when pale (the correlation ignores contrast), one
    drawn elsewhere or not at all scores low. Unlike the tracker it needs no template match, so a
    faint sprite on its path counts as placed. ``backdrop``: ``backdrop_clip(generated, entities)``
    when already fitted."""
    backdrop = backdrop_clip(generated, entities, keep=keep) if backdrop is None else backdrop  # (F, H, W, 3)
    target = sprites_on(backdrop, entities).astype(np.float32)  # (F, H, W, 3)
    drawn = np.abs(generated - backdrop).sum(-1)  # (F, H, W)
    wanted = np.abs(target - backdrop).sum(-1)  # (F, H, W)
    num_frames, height, width = generated.shape[:3]
    scores = np.zeros((len(entities), num_frames))
    for i, e in enumerate(entities):
        for f in range(num_frames):
            half = max(e.sizes[f], keep * min(height, width))
            (x, y) = e.points[f]
            y0, y1 = int(max(0, np.floor(y - half))), int(min(height, np.ceil(y + half) + 1))
            x0, x1 = int(max(0, np.floor(x - half))), int(min(width, np.ceil(x + half) + 1))
            a, b = drawn[f, y0:y1, x0:x1].ravel(), wanted[f, y0:y1, x0:x1].ravel()
            a, b = a - a.mean(), b - b.mean()
            denominator = np.sqrt((a * a).sum() * (b * b).sum())
            scores[i, f] = (a * b).sum() / denominator if denominator > 0 else 0.0
    return np.array([np.median(row[e.visible]) if e.visible.any() else np.nan for row, e in zip(scores, entities)])


def backdrop_clip(generated: np.ndarray, entities, margin: float = 1.5, keep: float = 0.21) -> np.ndarray:
    """Generated frames (F, H, W, 3) → (F, H, W, 3) float32: per frame and colour, the quadratic
    surface fitted to the pixels farther than ``margin`` × max(sprite size, ``keep`` × the frame side)
    from every entity's point: the smooth backdrop a tiny denoiser draws, without its sprites."""
    num_frames, height, width = generated.shape[:3]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = xs / width - 0.5, ys / height - 0.5
    design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1).reshape(-1, 6)  # (H·W, 6)
    backdrop = np.empty(generated.shape, np.float32)
    for f in range(num_frames):
        free = np.ones((height, width), bool)
        for e in entities:
            half = margin * max(e.sizes[f], keep * min(height, width)) / 2.0
            (x, y) = e.points[f]
            free &= (np.abs(xs - x) > half) | (np.abs(ys - y) > half)
        rows = free.reshape(-1)
        pixels = generated[f].reshape(-1, 3)
        if rows.sum() >= 64:
            coefficients, *_ = np.linalg.lstsq(design[rows], pixels[rows], rcond=None)  # (6, 3)
            frame = (design @ coefficients).reshape(height, width, 3)
        else:  # the entities cover the frame: its median colour
            frame = np.broadcast_to(np.median(pixels, axis=0), (height, width, 3)).copy()
        backdrop[f] = np.clip(frame, 0, 255)
    return backdrop
