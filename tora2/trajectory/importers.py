"""Other trajectory formats → :class:`Track`, and :func:`load_tracks`, which picks by extension.

* Tora ``.txt``: one ``x,y`` integer pair per line on a 256×256 canvas, one entity per file. The
  official preprocessing is reproduced exactly (see :func:`tora_resample`), including its ``int()``
  truncations, so a Tora user gets the same pixel path here as in Tora.
* Point-track arrays ``.npy`` as used by ATI / Wan-Move: (T, 2) for one entity or (N, T, 2) for N,
  with an optional third channel (T, 3) / (N, T, 3) holding visibility (> 0.5 = visible).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from tora2.errors import InputError
from tora2.trajectory.format import (
    Canvas,
    PathSpec,
    Track,
    check_in_canvas,
    check_output_size,
    parse_track_json,
    read_json,
    resolve_path,
    tracks_from_json,
)

TORA_CANVAS = 256  # Tora's .txt coordinates live on a 256×256 canvas
EXTENSIONS = (".json", ".txt", ".npy")


# ---------------------------------------------------------------------------------------------- Tora .txt


def read_tora_txt(path: str | os.PathLike) -> list[tuple[int, int]]:
    """The raw ``x,y`` pairs of a Tora ``.txt`` file (integers; ``12.7`` is truncated to 12)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"track file {path} does not exist: pass the path of a Tora .txt track")
    points = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise InputError(f"{path} line {number}: expected 'x,y' (two numbers); got {line.strip()!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InputError(f"{path} line {number}: {line.strip()!r} is not finite; use numbers in 0..255")
        points.append((int(x), int(y)))
    return points


def tora_resample(points: list[tuple[int, int]], num_frames: int) -> list[tuple[int, int]]:
    """Tora's ``read_points`` then ``process_points``, composed: exactly ``num_frames`` points.

    * More points than frames: keep every ``len // F``-th point, then the first ``F``. (``read_points``
      does this first; ``process_points`` then keeps ``F − 1`` and appends the last, a no-op on the
      already-subsampled list, so the last raw point is dropped unless it falls on the stride.)
    * Fewer: ``F − len`` points are inserted linearly, ``n = missing // segments`` per segment and one
      more in each of the first ``missing % segments`` segments, each coordinate truncated by ``int()``.
    """
    if len(points) < 2:
        raise ValueError(f"a Tora path needs at least 2 points; got {len(points)}")
    points = [tuple(p) for p in points]
    if len(points) >= num_frames:
        skip = len(points) // num_frames
        return points[::skip][:num_frames]
    segments = len(points) - 1
    missing = num_frames - len(points)
    per_segment = [missing // segments + (1 if i < missing % segments else 0) for i in range(segments)]
    out = []
    for i, count in enumerate(per_segment):
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        out.append(points[i])
        for j in range(count):
            fraction = (j + 1) / (count + 1)
            out.append((int(x0 + fraction * (x1 - x0)), int(y0 + fraction * (y1 - y0))))
    out.append(points[-1])
    return out


def tora_scale(points: list[tuple[int, int]], height: int, width: int) -> np.ndarray:
    """Tora's 256-canvas → video pixels: ``int(w * x / 256)``, ``int(h * y / 256)``. (F, 2) float64."""
    return np.array(
        [[int(width * x / TORA_CANVAS), int(height * y / TORA_CANVAS)] for x, y in points], dtype=np.float64
    ).reshape(-1, 2)


def tracks_from_tora_txt(
    path: str | os.PathLike, *, num_frames: int, height: int, width: int, clip: bool = False
) -> list[Track]:
    """One Tora ``.txt`` file → one :class:`Track` (id = the file stem)."""
    check_output_size(num_frames, height, width)
    raw = read_tora_txt(path)
    if len(raw) < 2:
        raise InputError(f"{path}: has {len(raw)} point(s); a path needs at least 2 'x,y' lines")
    xy = np.array(raw, dtype=np.float64)
    bad = (xy < 0).any(axis=1) | (xy >= TORA_CANVAS).any(axis=1)
    if bad.any():
        index = int(np.argmax(bad))
        message = f"{path} line {index + 1}: ({raw[index][0]}, {raw[index][1]}) is outside Tora's 256x256 canvas (0..255)"
        if not clip:
            raise InputError(f"{message}; fix the point or pass --clip (clip=True) to clamp it")
        warnings.warn(f"{message}; clamped {int(bad.sum())} point(s)", stacklevel=2)
        raw = [(min(max(x, 0), TORA_CANVAS - 1), min(max(y, 0), TORA_CANVAS - 1)) for x, y in raw]
    points = tora_scale(tora_resample(raw, num_frames), height, width)  # (F, 2)
    return [
        Track(id=Path(path).stem, text=None, image=None, kind="auto", points=points, visible=np.ones(num_frames, bool))
    ]


# ---------------------------------------------------------------------------------------------- .npy arrays


def tracks_from_npy(
    path: str | os.PathLike,
    *,
    num_frames: int,
    height: int,
    width: int,
    clip: bool = False,
    canvas_size: tuple[float, float] | None = None,
) -> list[Track]:
    """Point tracks (T, 2|3) or (N, T, 2|3) → N tracks, resampled to ``num_frames`` in time.

    Coordinates are pixels of ``canvas_size`` = (width, height), default the output size.
    """
    check_output_size(num_frames, height, width)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"track file {path} does not exist: pass the path of a .npy point-track array")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a readable .npy array ({error}); save it with numpy.save") from None
    if array.ndim == 2:
        array = array[None]  # (1, T, C)
    if array.ndim != 3 or array.shape[2] not in (2, 3) or not np.issubdtype(array.dtype, np.number):
        raise InputError(
            f"{path}: array of shape {array.shape} ({array.dtype}); expected numbers shaped (T, 2), (T, 3), "
            "(N, T, 2) or (N, T, 3) with x, y[, visibility]"
        )
    array = array.astype(np.float64)
    if array.shape[1] < 2:
        raise InputError(f"{path}: each track has {array.shape[1]} point(s); a path needs at least 2")
    if not np.isfinite(array).all():
        n, t, c = np.argwhere(~np.isfinite(array))[0]
        raise InputError(f"{path}: value at [{n}, {t}, {c}] is {array[n, t, c]}; use finite numbers")
    canvas_width, canvas_height = canvas_size if canvas_size is not None else (width, height)
    canvas = Canvas(float(canvas_width), float(canvas_height))
    tracks = []
    for i in range(array.shape[0]):
        where = f"{path}, track {i}"
        xy = check_in_canvas(array[i, :, :2], canvas, where, "points", clip)
        visible = array[i, :, 2] > 0.5 if array.shape[2] == 3 else np.ones(len(xy), dtype=bool)
        spec = PathSpec(id=f"track{i}", text=None, image=None, kind="auto", xy=xy, visible=visible, where=where)
        tracks.append(resolve_path(spec, canvas, num_frames=num_frames, height=height, width=width, fps=1.0))
    return tracks


# ---------------------------------------------------------------------------------------------- any format


def load_tracks(
    path: str | os.PathLike,
    *,
    num_frames: int,
    height: int,
    width: int,
    clip: bool = False,
    fps: float = 8.0,
) -> list[Track]:
    """Read a track file of any supported format (by extension: .json, .txt, .npy).

    Relative ``image`` paths in a track.json are resolved against the file's directory.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        tracks = tracks_from_json(
            read_json(path), num_frames=num_frames, height=height, width=width, clip=clip, fps=fps, source=str(path)
        )
        for track in tracks:
            if track.image is not None and not os.path.isabs(track.image):
                track.image = str(path.parent / track.image)
        return tracks
    if suffix == ".txt":
        return tracks_from_tora_txt(path, num_frames=num_frames, height=height, width=width, clip=clip)
    if suffix == ".npy":
        return tracks_from_npy(path, num_frames=num_frames, height=height, width=width, clip=clip)
    raise InputError(f"{path}: unknown track format {suffix or '(no extension)'!r}; use one of {', '.join(EXTENSIONS)}")


def natural_size(path: str | os.PathLike, fps: float = 8.0) -> tuple[int | None, int | None, int | None]:
    """(num_frames, height, width) a track file implies on its own; None where it implies nothing.

    track.json: the pixel canvas, and the longest path (points, or up to the last keyframe).
    Tora .txt: its 256×256 canvas and its number of points. .npy: its number of time steps.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"track file {path} does not exist: pass the path of a .json, .txt or .npy track")
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = read_json(path)
        with warnings.catch_warnings():  # only sizes are wanted here; loading reports bad points
            warnings.simplefilter("ignore")
            canvas, file_fps, specs = parse_track_json(data, clip=True, source=str(path))
        fps = file_fps if file_fps is not None else fps
        lengths = []
        for spec in specs:
            if spec.times is None:
                lengths.append(len(spec.xy))
            else:
                last = spec.times[-1] * (fps if spec.time_unit == "second" else 1.0)
                lengths.append(int(np.ceil(last - 1e-9)) + 1)
        height = None if canvas.normalized else int(round(canvas.height))
        width = None if canvas.normalized else int(round(canvas.width))
        return max(lengths), height, width
    if suffix == ".txt":
        return len(read_tora_txt(path)), TORA_CANVAS, TORA_CANVAS
    if suffix == ".npy":
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError) as error:
            raise InputError(f"{path}: not a readable .npy array ({error}); save it with numpy.save") from None
        return (shape[-2] if len(shape) >= 2 else None), None, None
    raise InputError(f"{path}: unknown track format {suffix or '(no extension)'!r}; use one of {', '.join(EXTENSIONS)}")
