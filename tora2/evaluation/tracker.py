"""Read an entity's path back from a video: template + colour matching of its reference sprite.

Glossary: F frames, H/W frame size, K candidates per frame, S template sizes.

1. Coarse search at a working resolution (shorter side ``work_side``): for each of S template
   sizes, normalised cross-correlation of the sprite's RGB under its opaque mask
   (:func:`masked_ncc`, built from ``cv2.matchTemplate``) plus ``color_weight`` × the share of the
   window's pixels whose hue/saturation the sprite has (histogram back-projection, box-averaged).
   One size band per clip: the size with the best average score (+ ``SIZE_PRIOR`` per doubling),
   ± ``SIZE_BAND``. Templates whose longer side would be under ``MIN_TEMPLATE_PX`` pixels of the
   video are not tried: in small frames (64 px) they matched specks of the background.
2. The K best local maxima per frame are linked by a Viterbi pass whose transition cost is the jump
   in pixels (× ``motion_weight`` / shorter side): a motion prior from the video alone, never from
   the requested path, so the measured error is not pulled towards the request.
3. Each chosen position is refined at full resolution in a small window, at three sizes around the
   coarse one, with a parabola fit for sub-pixel precision.

The centre reported is where the centre of the sprite's alpha box is, which is what the synthetic
clips' ground truth and the requested tracks mean by an entity's position.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tora2.errors import InputError

WORK_SIDE = 160
SIZE_FRACTIONS = tuple(np.geomspace(0.08, 0.48, 14))  # sprite's longer side / frame's shorter side
# No template under this many video pixels (the synthetic clips' MIN_SIZE: below it a sprite is
# unrecognisable). Only small frames lose sizes (64 px: the four smallest, 5–8 px); chosen on
# training-split cases, docs/results.md ("The tracker").
MIN_TEMPLATE_PX = 8.0
COLOR_WEIGHT = 0.3
MOTION_WEIGHT = 0.5
SIZE_BAND = 1.3  # per-frame sizes stay within this factor of the clip's best size
SIZE_PRIOR = 0.2  # score bonus per doubling of the template size (measured on held-out clips, docs/results.md)
OPAQUE = 0.9  # template pixels with at least this coverage are matched
TOP_K = 6
HS_BINS = (18, 8)
NOISE_FLOOR = 4.0  # grey levels: windows flatter than this are not trusted


@dataclass
class TrackResult:
    """points (F, 2) float64 pixel centres; sizes (F,) sprite longer side in pixels; scores (F,) match scores."""

    points: np.ndarray
    sizes: np.ndarray
    scores: np.ndarray


def _template(sprite: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """RGBA sprite resized so its longer side is ``size`` → (RGB float32 (h, w, 3), mask float32 (h, w))."""
    h, w = sprite.shape[:2]
    scale = size / max(h, w)
    tw, th = max(3, int(round(w * scale))), max(3, int(round(h * scale)))
    rgba = sprite.astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    premultiplied = np.concatenate([rgba[..., :3] * alpha, alpha], axis=2)  # transparent pixels carry no colour
    resized = cv2.resize(premultiplied, (tw, th), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    coverage = resized[..., 3]
    rgb = resized[..., :3] / np.maximum(coverage, 1e-3)[..., None]
    # Only (almost) opaque pixels vote: edge pixels are blended with an unknown background.
    mask = (coverage > OPAQUE).astype(np.float32)
    if mask.sum() < 4:
        mask = (coverage > 0.5).astype(np.float32)
    return rgb.astype(np.float32), mask


def masked_ncc(image: np.ndarray, template: np.ndarray, mask: np.ndarray, noise: float = NOISE_FLOOR) -> np.ndarray:
    """Zero-mean normalised cross-correlation of an RGB template under a binary mask.

    image (H, W, 3), template (h, w, 3), mask (h, w) float32 → (H−h+1, W−w+1) in [−1, 1]. The
    window's variance gets ``noise``² per pixel and channel added, so flat regions score near 0
    instead of blowing up (OpenCV's own masked TM_CCOEFF_NORMED divides by their ~0 variance).
    """
    count = float(mask.sum())
    centred = (template - (template * mask[..., None]).sum(axis=(0, 1)) / count) * mask[..., None]  # (h, w, 3)
    numerator = cv2.matchTemplate(image, centred, cv2.TM_CCORR)  # sums over channels
    variance = np.zeros_like(numerator)
    for c in range(3):
        channel = np.ascontiguousarray(image[..., c])
        total = cv2.matchTemplate(channel, mask, cv2.TM_CCORR)
        squares = cv2.matchTemplate(channel * channel, mask, cv2.TM_CCORR)
        variance += np.maximum(squares - total * total / count, 0.0)
    denominator = np.sqrt(variance + 3 * count * noise**2) * float(np.sqrt((centred**2).sum()))
    return numerator / np.maximum(denominator, 1e-6)


def _hue_histogram(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], (mask > 0).astype(np.uint8), list(HS_BINS), [0, 180, 0, 256])
    return hist / max(float(hist.max()), 1e-6)  # (18, 8) in [0, 1]


def _score_map(frame: np.ndarray, hsv: np.ndarray, template: np.ndarray, mask: np.ndarray, hist: np.ndarray,
               color_weight: float) -> np.ndarray:
    """Score of every sprite *centre* position → (H, W) float32, −inf where the sprite would not fit."""
    height, width = frame.shape[:2]
    th, tw = mask.shape
    out = np.full((height, width), -np.inf, dtype=np.float32)
    if th > height or tw > width:
        return out
    ncc = masked_ncc(frame, template, mask)  # (H-th+1, W-tw+1)
    if color_weight:
        backprojection = cv2.calcBackProject([hsv], [0, 1], hist, [0, 180, 0, 256], 1).astype(np.float32)  # (H, W)
        colour = cv2.boxFilter(backprojection, -1, (tw, th), anchor=(0, 0), normalize=True,
                               borderType=cv2.BORDER_CONSTANT)[: height - th + 1, : width - tw + 1]
        ncc = ncc + color_weight * colour
    y0, x0 = (th - 1) // 2, (tw - 1) // 2  # top-left → centre (integer part; the half pixel is added later)
    out[y0 : y0 + ncc.shape[0], x0 : x0 + ncc.shape[1]] = ncc
    return out


def _peaks(score: np.ndarray, k: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``k`` local maxima → ((k, 2) integer (x, y), (k,) scores), best first."""
    dilated = cv2.dilate(score, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    ys, xs = np.nonzero((score >= dilated) & np.isfinite(score))
    if len(xs) == 0:
        ys, xs = np.array([score.shape[0] // 2]), np.array([score.shape[1] // 2])
        return np.stack([xs, ys], 1), np.array([-1.0])
    values = score[ys, xs]
    order = np.argsort(-values)[:k]
    return np.stack([xs[order], ys[order]], axis=1), values[order]


def _viterbi(candidates: list[np.ndarray], scores: list[np.ndarray], jump_cost: float) -> list[int]:
    """Best path through per-frame candidates: maximise Σ score − jump_cost × Σ |jump|."""
    total = scores[0].astype(np.float64)
    back = []
    for f in range(1, len(candidates)):
        jumps = np.linalg.norm(candidates[f][:, None, :] - candidates[f - 1][None, :, :], axis=2)  # (Kf, Kf-1)
        options = total[None, :] - jump_cost * jumps
        back.append(np.argmax(options, axis=1))
        total = scores[f] + options.max(axis=1)
    chosen = [int(np.argmax(total))]
    for pointers in reversed(back):
        chosen.append(int(pointers[chosen[-1]]))
    return chosen[::-1]


def _subpixel(score: np.ndarray, x: int, y: int) -> tuple[float, float]:
    def offset(minus, centre, plus):
        denominator = minus - 2 * centre + plus
        if not np.isfinite(denominator) or denominator >= 0:
            return 0.0
        return float(np.clip(0.5 * (minus - plus) / denominator, -0.5, 0.5))

    h, w = score.shape
    dx = offset(score[y, x - 1], score[y, x], score[y, x + 1]) if 0 < x < w - 1 else 0.0
    dy = offset(score[y - 1, x], score[y, x], score[y + 1, x]) if 0 < y < h - 1 else 0.0
    return x + dx, y + dy


def _refine(frame: np.ndarray, sprite: np.ndarray, centre: np.ndarray, size: float, radius: int) -> tuple[float, float, float, float]:
    """Full-resolution match near ``centre`` at sizes 0.92, 1, 1.08 × ``size`` → (x, y, size, score)."""
    height, width = frame.shape[:2]
    best = (float(centre[0]), float(centre[1]), size, -np.inf)
    for factor in (0.92, 1.0, 1.08):
        template, mask = _template(sprite, size * factor)
        th, tw = mask.shape
        cx, cy = (tw - 1) / 2.0, (th - 1) / 2.0
        # window of top-left positions whose centre lies within ``radius`` of the coarse centre
        x0 = int(np.clip(np.floor(centre[0] - cx) - radius, 0, max(width - tw, 0)))
        y0 = int(np.clip(np.floor(centre[1] - cy) - radius, 0, max(height - th, 0)))
        x1 = min(width, x0 + tw + 2 * radius + 1)
        y1 = min(height, y0 + th + 2 * radius + 1)
        window = frame[y0:y1, x0:x1]
        if window.shape[0] < th or window.shape[1] < tw:
            continue
        ncc = masked_ncc(np.ascontiguousarray(window), template, mask)
        y, x = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        if ncc[y, x] > best[3]:
            sx, sy = _subpixel(ncc, int(x), int(y))
            best = (x0 + sx + cx, y0 + sy + cy, size * factor, float(ncc[y, x]))
    return best


def track_entity(frames: np.ndarray, reference: np.ndarray, *, size_fractions=SIZE_FRACTIONS,
                 color_weight: float = COLOR_WEIGHT, motion_weight: float = MOTION_WEIGHT, top_k: int = TOP_K,
                 work_side: int = WORK_SIDE) -> TrackResult:
    """Track one entity through ``frames`` (F, H, W, 3) uint8 given its reference (h, w, 4) RGBA sprite."""
    frames = np.asarray(frames)
    reference = np.asarray(reference)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be (F, H, W, 3) uint8; got {frames.dtype} {tuple(frames.shape)}")
    if reference.ndim != 3 or reference.shape[-1] != 4 or reference.dtype != np.uint8:
        raise InputError(f"reference must be an (h, w, 4) uint8 RGBA sprite (alpha = mask); got {reference.dtype} {tuple(reference.shape)}")
    if not (reference[..., 3] > 127).any():
        raise InputError("reference sprite is fully transparent; give an RGBA image whose alpha marks the entity")
    num_frames, height, width = frames.shape[:3]
    side = min(height, width)
    factor = min(1.0, work_side / side)
    work_size = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))
    sizes = [s * side for s in size_fractions if s * side >= MIN_TEMPLATE_PX] or [max(size_fractions) * side]  # full-resolution pixels

    templates = []
    for size in sizes:
        template, mask = _template(reference, size * factor)
        templates.append((template, mask, _hue_histogram(template, mask)))

    all_maps = []  # per frame (S, h, w): every size's score map at the working resolution
    for f in range(num_frames):
        small = cv2.resize(frames[f], work_size, interpolation=cv2.INTER_AREA) if factor < 1 else frames[f]
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        small = small.astype(np.float32)
        all_maps.append(np.stack([_score_map(small, hsv, t, m, h, color_weight) for t, m, h in templates]))
    # An entity keeps roughly one size through a clip: pick the size that matches best on average,
    # then let each frame choose only among sizes near it (stops tiny templates locking onto specks).
    per_size = np.mean([maps.reshape(len(sizes), -1).max(axis=1) for maps in all_maps], axis=0)  # (S,)
    per_size = per_size + SIZE_PRIOR * np.log2(np.asarray(sizes))  # a sprite's parts also match smaller templates
    best_size = sizes[int(np.argmax(per_size))]
    band = np.array([best_size / SIZE_BAND <= s <= best_size * SIZE_BAND for s in sizes])  # (S,)
    band_sizes = np.asarray(sizes)[band]

    candidates, candidate_scores, candidate_sizes = [], [], []
    for maps in all_maps:
        maps = maps[band]  # (S', h, w)
        best = maps.max(axis=0)  # (h, w)
        radius = max(1, int(0.25 * best_size * factor))
        xy, values = _peaks(best, top_k, radius)  # (K, 2), (K,)
        which = maps[:, xy[:, 1], xy[:, 0]].argmax(axis=0)  # (K,) best size per candidate
        candidates.append((xy + 0.5) / factor - 0.5)  # full-resolution pixels
        candidate_scores.append(values)
        candidate_sizes.append(band_sizes[which])
    chosen = _viterbi(candidates, candidate_scores, motion_weight / side)

    points = np.zeros((num_frames, 2))
    out_sizes = np.zeros(num_frames)
    scores = np.zeros(num_frames)
    radius = int(np.ceil(1.0 / factor)) + 2
    for f, k in enumerate(chosen):
        x, y, size, score = _refine(frames[f].astype(np.float32), reference, candidates[f][k], candidate_sizes[f][k], radius)
        points[f] = (x, y)
        out_sizes[f] = size
        scores[f] = score
    return TrackResult(points, out_sizes, scores)
