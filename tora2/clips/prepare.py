"""Videos → clip manifest, the parts that need no segmentation model: finding videos, captions,
decoding, choosing the training window, tracking a mask through the clip, and the summary.

``entities.tracking.prepare_dataset`` adds the entity masks (user masks, SAM or GrabCut) and the
reference crops and calls these functions; ``tora2 data prepare`` is its CLI.

Tracking (``track_mask``): the entity's mask on one frame gives its centre (the mask centroid);
dense optical flow (OpenCV DIS) between consecutive frames, median over the pixels of the region
(the mask moved along with the track), moves the centre and the region one frame at a time,
forward and backward from the masked frame. The entity is invisible on frames where less than
``MIN_VISIBLE_FRACTION`` of the moved region lies inside the frame; there the track keeps its
last velocity.

Glossary: F frames, H/W frame size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tora2.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".avi")
# Share of the tracked region that must lie inside the frame for the entity to count as visible.
MIN_VISIBLE_FRACTION = 0.25
# Flow is computed on a copy whose longer side is at most this (DIS cost grows with pixels).
FLOW_MAX_SIDE = 512
# A template match counts when its RMS colour difference (0–255 scale) over the mask is below this.
MATCH_MAX_RMS = 40.0


class ClipDropped(Exception):
    """A clip that cannot become a training sample; ``reason`` goes into the summary table."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class PrepareReport:
    manifest: Path
    kept: list[tuple[str, int, int]] = field(default_factory=list)  # (clip id, entities, start_frame)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (video file name, reason)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- inputs
def find_videos(video_dir: str | Path) -> list[Path]:
    """The videos directly inside ``video_dir``, sorted by name."""
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise InputError(f"video folder {video_dir} does not exist; pass a folder of clips ({', '.join(VIDEO_SUFFIXES)})")
    videos = sorted(p for p in video_dir.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise InputError(f"video folder {video_dir} has no videos; put clips ({', '.join(VIDEO_SUFFIXES)}) directly in it")
    return videos


def read_caption(video: Path) -> str:
    """The caption of ``clip.mp4`` is the text of ``clip.txt`` beside it (whitespace collapsed)."""
    sidecar = video.with_suffix(".txt")
    if not sidecar.is_file():
        raise ClipDropped(f"no caption ({sidecar.name} missing)")
    caption = " ".join(sidecar.read_text(encoding="utf-8", errors="replace").split())
    if not caption:
        raise ClipDropped(f"empty caption ({sidecar.name})")
    return caption


def load_frames(video: Path) -> np.ndarray:
    """Every frame of a video → (F, H, W, 3) uint8."""
    import imageio.v3 as iio

    try:
        frames = np.asarray(iio.imread(video, index=None))
    except Exception as error:  # imageio/pyav raise many types for unreadable files
        raise ClipDropped(f"unreadable video ({type(error).__name__})") from None
    if frames.ndim == 3:  # (F, H, W) grey
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or len(frames) == 0:
        raise ClipDropped(f"unreadable video (decoded shape {frames.shape})")
    return np.ascontiguousarray(frames[..., :3])


def choose_window(total: int, num_frames: int, mask_frame: int) -> int:
    """First frame of the training window: the last ``num_frames`` frames when the masked (reference)
    frame precedes them, else the first ``num_frames`` when it follows them — as far from the
    reference frame as the clip allows, so the model cannot copy-paste the reference."""
    if total - num_frames > mask_frame:
        return total - num_frames
    if mask_frame >= num_frames:
        return 0
    raise ClipDropped(f"too short ({total} frames; needs {num_frames} for the window + 1 outside it for the reference)")


# ---------------------------------------------------------------------------------------------- tracking
def _resize(frames: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return frames
    return np.stack([cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames])


def _shift(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The mask translated by (dx, dy) pixels (nearest pixel), cut at the frame border."""
    h, w = mask.shape
    ix, iy = int(round(dx)), int(round(dy))
    out = np.zeros_like(mask)
    if abs(ix) >= w or abs(iy) >= h:
        return out
    xs, xd = (slice(0, w - ix), slice(ix, w)) if ix >= 0 else (slice(-ix, w), slice(0, w + ix))
    ys, yd = (slice(0, h - iy), slice(iy, h)) if iy >= 0 else (slice(-iy, h), slice(0, h + iy))
    out[yd, xd] = mask[ys, xs]
    return out


class _Template:
    """The entity's appearance on the masked frame: re-locks the track when flow drifts (occlusion,
    fast motion, textureless regions, where the median flow alone loses the region)."""

    def __init__(self, frame: np.ndarray, mask: np.ndarray):
        ys, xs = np.nonzero(mask)
        self.y0, self.x0 = ys.min(), xs.min()
        self.patch = np.ascontiguousarray(frame[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]).astype(np.float32)
        self.weight = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
        self.weight3 = np.ascontiguousarray(np.repeat(self.weight[..., None], 3, axis=-1))
        self.pixels = float(self.weight.sum())

    def refine(self, frame: np.ndarray, offset: np.ndarray, widen: int = 0) -> np.ndarray | None:
        """The offset (dx, dy) of the best match near ``offset``, or None when nothing matches well.
        The search radius is half the template's side, times ``1 + widen`` (frames since the last match)."""
        h, w = frame.shape[:2]
        th, tw = self.patch.shape[:2]
        radius = max(4, int(0.5 * max(th, tw))) * (1 + min(widen, 4))
        x, y = int(round(self.x0 + offset[0])), int(round(self.y0 + offset[1]))
        left, top = max(0, x - radius), max(0, y - radius)
        right, bottom = min(w, x + tw + radius), min(h, y + th + radius)
        if right - left < tw or bottom - top < th:
            return None  # the region is (partly) outside the frame: keep the flow estimate
        window = np.ascontiguousarray(frame[top:bottom, left:right]).astype(np.float32)
        cost = cv2.matchTemplate(window, self.patch, cv2.TM_SQDIFF, mask=self.weight3)  # (h', w')
        best = np.unravel_index(int(np.argmin(cost)), cost.shape)
        rms = float(np.sqrt(max(cost[best], 0.0) / (3 * self.pixels)))
        if rms > MATCH_MAX_RMS:
            return None
        return np.array([left + best[1] - self.x0, top + best[0] - self.y0], dtype=np.float64)


def track_mask(frames: np.ndarray, mask: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Track a region masked on ``frames[frame]`` through the clip.

    frames: (F, H, W, 3) uint8; mask: (H, W) bool. Returns points (F, 2) float64 pixel (x, y) — the
    mask centroid moved by the region's median optical flow, re-locked by template matching — and
    visible (F,) bool.
    """
    count, height, width = frames.shape[:3]
    if mask.shape != (height, width):
        raise ValueError(f"mask must be ({height}, {width}); got {mask.shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    if not 0 <= frame < count:
        raise ValueError(f"frame {frame} outside 0..{count - 1}")
    scale = min(1.0, FLOW_MAX_SIDE / max(height, width))
    colour = _resize(frames, scale)  # (F, h, w, 3)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in colour]
    small = cv2.resize(mask.astype(np.uint8), (colour.shape[2], colour.shape[1]), interpolation=cv2.INTER_NEAREST) > 0
    if not small.any():
        raise ValueError(f"mask of {int(mask.sum())} pixels vanishes at the flow scale {scale:.3f}")
    area = float(small.sum())
    template = _Template(colour[frame], small)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()])
    points = np.zeros((count, 2))  # (F, 2)
    visible = np.zeros(count, dtype=bool)
    points[frame], visible[frame] = centre, True
    for direction in (1, -1):
        offset = np.zeros(2)  # displacement of the region since the masked frame, flow-scale pixels
        velocity = np.zeros(2)
        lost = 0  # frames since the template last matched (occluded or changed): coast, search wider
        t = frame
        while 0 <= t + direction < count:
            region = _shift(small, *offset)
            if region.any() and lost == 0:
                flow = dis.calc(grey[t], grey[t + direction], None)  # (h, w, 2)
                velocity = np.median(flow[region], axis=0)
            predicted = offset + velocity
            refined = template.refine(colour[t + direction], predicted, lost)
            if refined is not None:
                velocity, predicted, lost = refined - offset, refined, 0
            else:
                lost += 1  # the region's flow may be an occluder's: keep the last velocity
            offset = predicted
            t += direction
            points[t] = centre + offset / scale
            visible[t] = _shift(small, *offset).sum() / area >= MIN_VISIBLE_FRACTION
    return points, visible


# ---------------------------------------------------------------------------------------------- summary
def summary_table(report: PrepareReport) -> str:
    """Kept and dropped clips, one row each, with the reason a clip was dropped."""
    rows = [("clip", "status", "detail")]
    rows += [(clip, "kept", f"{entities} entit{'y' if entities == 1 else 'ies'}, window from frame {start}")
             for clip, entities, start in report.kept]
    rows += [(video, "dropped", reason) for video, reason in report.dropped]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append(f"{len(report.kept)} kept, {len(report.dropped)} dropped → {report.manifest}")
    return "\n".join(lines)
