"""Draw tracks for a human: a still image of every path (PNG) or an animation with a moving
marker per entity (GIF / MP4), over a background image or a plain canvas."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from tora2.errors import InputError
from tora2.io import atomic_output
from tora2.trajectory.format import Track

# Distinct, readable on light and dark backgrounds (Tableau 10).
ENTITY_COLORS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
CANVAS_COLOR = (235, 235, 235)
PREVIEW_SUFFIXES = (".png", ".gif", ".mp4")


def _font(height: int, width: int):
    """PIL's built-in font at a size that reads at the video's scale (older PIL: its fixed bitmap font)."""
    try:
        return ImageFont.load_default(size=max(10, min(height, width) // 30))
    except TypeError:
        return ImageFont.load_default()


def entity_color(index: int) -> tuple[int, int, int]:
    return ENTITY_COLORS[index % len(ENTITY_COLORS)]


def load_background(background, height: int, width: int) -> Image.Image:
    """A path or PIL image resized to the video size; ``None`` → a plain light-grey canvas."""
    if background is None:
        return Image.new("RGB", (width, height), CANVAS_COLOR)
    if isinstance(background, Image.Image):
        image = background
    else:
        if not Path(background).is_file():
            raise InputError(f"background image {background} does not exist: pass an image file or leave it out")
        try:
            image = Image.open(background)
            image.load()
        except OSError:
            raise InputError(f"background {background} is not an image PIL can read; use PNG or JPEG") from None
    return image.convert("RGB").resize((width, height), Image.BILINEAR)


def _segments(track: Track) -> list[list[tuple[float, float]]]:
    """Runs of consecutive visible frames, as polylines."""
    runs, current = [], []
    for (x, y), seen in zip(track.points, track.visible):
        if seen:
            current.append((float(x), float(y)))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _line_width(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 160))


def _draw_paths(draw: ImageDraw.ImageDraw, tracks: list[Track], height: int, width: int, faint: bool = False) -> None:
    line_width = _line_width(height, width)
    radius = 2 * line_width + 1
    font = _font(height, width)
    for i, track in enumerate(tracks):
        color = entity_color(i)
        if faint:
            color = tuple(int(c * 0.5 + 255 * 0.5) for c in color)
        for run in _segments(track):
            if len(run) > 1:
                draw.line(run, fill=color, width=line_width, joint="curve")
        visible = np.flatnonzero(track.visible)
        if len(visible) == 0:
            continue
        (x0, y0), (x1, y1) = track.points[visible[0]], track.points[visible[-1]]
        draw.ellipse((x0 - radius, y0 - radius, x0 + radius, y0 + radius), outline=color, width=line_width)  # start
        draw.ellipse((x1 - radius, y1 - radius, x1 + radius, y1 + radius), fill=color)  # end
        if not faint:
            draw.text((x0 + radius + 2, y0 - radius - getattr(font, "size", 10)), track.id, fill=color, font=font)


def draw_tracks(tracks: list[Track], height: int, width: int, background=None) -> Image.Image:
    """Every path in its entity's colour: hollow circle at the start, dot at the end, id label."""
    image = load_background(background, height, width)
    _draw_paths(ImageDraw.Draw(image), tracks, height, width)
    return image


def animate_tracks(
    tracks: list[Track], height: int, width: int, background=None, progress: bool = False
) -> np.ndarray:
    """(F, H, W, 3) uint8 frames: faint full paths plus a labelled marker at each entity's position."""
    base = load_background(background, height, width)
    _draw_paths(ImageDraw.Draw(base), tracks, height, width, faint=True)
    num_frames = len(tracks[0].points)
    radius = 3 * _line_width(height, width) + 2
    font = _font(height, width)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in tqdm(range(num_frames), desc="preview", unit="frame", disable=not progress, leave=False):
        frame = base.copy()
        draw = ImageDraw.Draw(frame)
        for i, track in enumerate(tracks):
            if not track.visible[t]:
                continue
            x, y = track.points[t]
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=entity_color(i), outline=(0, 0, 0))
            draw.text((x + radius + 2, y - radius - getattr(font, "size", 10)), track.id, fill=entity_color(i), font=font)
        draw.text((4, 2), f"{t + 1}/{num_frames}", fill=(0, 0, 0), font=font)
        frames[t] = np.asarray(frame)
    return frames


def save_preview(
    tracks: list[Track],
    path: str | os.PathLike,
    *,
    height: int,
    width: int,
    background=None,
    fps: float = 8.0,
    progress: bool = False,
) -> None:
    """Write a still (``.png``) or an animation (``.gif`` / ``.mp4``), chosen by the suffix."""
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PREVIEW_SUFFIXES:
        raise InputError(f"{path}: preview format {suffix or '(none)'!r} is not supported; use {', '.join(PREVIEW_SUFFIXES)}")
    if not tracks:
        raise InputError("no tracks to preview")
    with atomic_output(path, suffix=suffix, make_parents=False) as tmp:
        if suffix == ".png":
            draw_tracks(tracks, height, width, background).save(tmp)
        else:
            frames = animate_tracks(tracks, height, width, background, progress)
            if suffix == ".gif":
                iio.imwrite(tmp, frames, extension=".gif", duration=1000 / fps, loop=0)
            else:
                # H.264 with yuv420p needs even sizes: pad the bottom/right edge by one pixel if odd.
                pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
                iio.imwrite(tmp, np.pad(frames, pad, mode="edge"), extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)


SHEET_GAP = 4  # pixels between frames and rows of a contact sheet


def sheet_rows(frames: np.ndarray, paths: list[np.ndarray], visible: list[np.ndarray] | None = None,
               scale: int = 4) -> tuple[Image.Image, Image.Image]:
    """A video's frames side by side, enlarged: once as they are, once with the requested paths.

    frames (F, H, W, 3) uint8; paths: per entity (F, 2) pixel points; visible: per entity (F,) bool.
    On the second strip each entity's whole path is a thin line in its colour with a ring (not a
    dot, so the sprite under it stays visible) where it was asked to be in that frame.
    """
    count, height, width = frames.shape[:3]
    visible = visible if visible is not None else [np.ones(len(p), dtype=bool) for p in paths]
    scaled = [np.asarray(p, dtype=float) * scale + (scale - 1) / 2.0 for p in paths]  # pixel centres at this scale
    seen_masks = [np.asarray(v, dtype=bool) for v in visible]
    lines = [[tuple(p) for p, v in zip(points, seen) if v] for points, seen in zip(scaled, seen_masks)]
    plain = Image.new("RGB", (count * (width * scale + SHEET_GAP) - SHEET_GAP, height * scale), "white")
    drawn = plain.copy()
    for t, frame in enumerate(frames):
        big = Image.fromarray(frame).resize((width * scale, height * scale), Image.NEAREST)
        left = t * (width * scale + SHEET_GAP)
        plain.paste(big, (left, 0))
        draw = ImageDraw.Draw(big)
        for i, (points, seen, line) in enumerate(zip(scaled, seen_masks, lines)):
            color = entity_color(i)
            if len(line) > 1:
                draw.line(line, fill=color, width=max(1, scale // 2))
            if seen[t]:
                x, y = points[t]
                r = 3 * scale
                draw.ellipse((x - r, y - r, x + r, y + r), outline=color, width=max(1, scale // 2))
        drawn.paste(big, (left, 0))
    return plain, drawn


def stack_rows(rows: list[Image.Image]) -> Image.Image:
    """Strips of equal width one under the other, ``SHEET_GAP`` apart, on white."""
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows) + SHEET_GAP * (len(rows) - 1)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height + SHEET_GAP
    return sheet
