"""``track.json``: parse, validate and resolve entity paths to the output video; write them back.

The format is documented in docs/track-format.md and described by ``tora2/data/track.schema.json``.
Validation here is hand-written rather than schema-driven so that every error is one line naming
the file, the entity, the field, what was found and what is allowed.

Two stages: :func:`parse_track_json` checks everything that does not depend on the output video
(fields, types, finite numbers, canvas bounds, keyframe order, entity/path counts) and returns
:class:`PathSpec` objects in canvas units; :func:`resolve_path` maps one to the output frames and
pixels, which adds the checks that do (keyframes past the last frame).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tora2.errors import InputError
from tora2.specs import KINDS
from tora2.trajectory.interpolate import (
    EASINGS,
    INTERPOLATIONS,
    evenly_spaced_times,
    interpolate_keyframes,
    interpolate_visibility,
)
from tora2.io import write_text_atomic

FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "data" / "track.schema.json"  # shipped with the package
TIME_UNITS = ("frame", "second")
NORMALIZED = "normalized"

_TOP_KEYS = ("version", "canvas", "fps", "entities", "paths", "path", "id", "text", "image", "kind")
_ENTITY_KEYS = ("id", "text", "image", "kind", "path")
_PATH_KEYS = ("points", "visible", "keyframes", "time_unit", "interpolation", "easing")
_KEYFRAME_KEYS = ("t", "xy", "visible")


@dataclass
class Track:
    """One entity's path resolved to the output video.

    points:  (num_frames, 2) float64 pixel coordinates (x, y) at the output size, x right, y down.
    visible: (num_frames,) bool, False where the entity is absent.
    kind:    "auto", "human" or "object".
    """

    id: str
    text: str | None
    image: str | None
    kind: str
    points: np.ndarray
    visible: np.ndarray


@dataclass
class PathSpec:
    """One entity's path as written in the file, in canvas units, before resolution.

    times: (K,) keyframe times in ``time_unit``, or None for per-frame ``points``.
    xy:    (K, 2) float64 positions in canvas units (pixels of ``canvas`` or [0, 1]).
    """

    id: str
    text: str | None
    image: str | None
    kind: str
    xy: np.ndarray
    visible: np.ndarray
    times: np.ndarray | None = None
    time_unit: str = "frame"
    interpolation: str = "linear"
    easing: str = "none"
    where: str = field(default="", repr=False)  # "track.json, entity 'cat'" for error messages


@dataclass
class Canvas:
    """The coordinate frame of a track file: pixels of ``width`` × ``height``, or normalised [0, 1]."""

    width: float | None = None
    height: float | None = None

    @property
    def normalized(self) -> bool:
        return self.width is None

    def describe(self) -> str:
        return "normalized [0, 1]" if self.normalized else f"{self.width:g}x{self.height:g} pixels"

    def limits(self) -> tuple[float, float]:
        """Largest allowed (x, y): the last pixel centre, or 1 for normalised coordinates."""
        if self.normalized:
            return 1.0, 1.0
        return self.width - 1, self.height - 1

    def to_pixels(self, xy: np.ndarray, height: int, width: int) -> np.ndarray:
        """Canvas units → output pixels. Normalised: 0 and 1 are the first and last pixel centres."""
        xy = np.asarray(xy, dtype=np.float64)
        if self.normalized:
            return xy * np.array([width - 1, height - 1], dtype=np.float64)
        if (self.width, self.height) == (width, height):
            return xy.copy()
        return xy * np.array([width / self.width, height / self.height], dtype=np.float64)


# ---------------------------------------------------------------------------------------------- parsing


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _check_keys(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _number(value, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: {name} must be a number; got {_type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{where}: {name} is {value}; use finite numbers")
    return float(value)


def _optional_str(obj: dict, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}: {key} must be a string; got {_type_name(value)} {value!r}")
    return value


def _choice(obj: dict, key: str, allowed: tuple[str, ...], default: str, where: str) -> str:
    value = obj.get(key, default)
    if value not in allowed:
        raise InputError(f"{where}: {key} is {value!r}; allowed: {', '.join(allowed)}")
    return value


def parse_canvas(data: dict, source: str) -> Canvas:
    """``"canvas": {"width": W, "height": H}`` or ``"canvas": "normalized"``."""
    if "canvas" not in data:
        raise InputError(
            f'{source}: missing field canvas; add "canvas": {{"width": W, "height": H}} or "canvas": "normalized"'
        )
    value = data["canvas"]
    if value == NORMALIZED:
        return Canvas()
    if not isinstance(value, dict) or set(value) != {"width", "height"}:
        raise InputError(
            f'{source}: canvas must be {{"width": W, "height": H}} or "normalized"; got {json.dumps(value)}'
        )
    width = _number(value["width"], source, "canvas.width")
    height = _number(value["height"], source, "canvas.height")
    if width < 2 or height < 2:
        raise InputError(f"{source}: canvas is {width:g}x{height:g}; width and height must be at least 2 pixels")
    return Canvas(width, height)


def check_in_canvas(xy: np.ndarray, canvas: Canvas, where: str, field_name: str, clip: bool) -> np.ndarray:
    """Reject (or with ``clip`` clamp, with a warning) coordinates outside the canvas."""
    x_max, y_max = canvas.limits()
    bad = (xy[:, 0] < 0) | (xy[:, 0] > x_max) | (xy[:, 1] < 0) | (xy[:, 1] > y_max)
    if not bad.any():
        return xy
    index = int(np.argmax(bad))
    x, y = xy[index]
    message = (
        f"{where}: {field_name}[{index}] = ({x:g}, {y:g}) is outside the canvas "
        f"(x in 0..{x_max:g}, y in 0..{y_max:g}, {canvas.describe()})"
    )
    if not clip:
        raise InputError(f"{message}; fix the point or pass --clip (clip=True) to clamp it")
    warnings.warn(f"{message}; clamped {int(bad.sum())} point(s) to the canvas", stacklevel=3)
    return np.clip(xy, 0.0, [x_max, y_max])


def _parse_xy_list(value, where: str, name: str) -> np.ndarray:
    if not isinstance(value, list):
        raise InputError(f"{where}: {name} must be a list of [x, y] pairs; got {_type_name(value)}")
    rows = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InputError(f"{where}: {name}[{i}] must be an [x, y] pair; got {json.dumps(pair)}")
        rows.append([_number(pair[0], where, f"{name}[{i}][0]"), _number(pair[1], where, f"{name}[{i}][1]")])
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def _parse_visible(value, count: int, where: str, name: str) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(v, bool) for v in value):
        raise InputError(f"{where}: {name} must be a list of true/false; got {json.dumps(value)[:60]}")
    if len(value) != count:
        raise InputError(f"{where}: {name} has {len(value)} values for {count} points; give one per point")
    return np.array(value, dtype=bool)


def parse_path(
    path: dict, canvas: Canvas, *, where: str, entity: dict, index: int, clip: bool = False
) -> PathSpec:
    """One path object (``points`` or ``keyframes``) plus its entity's metadata → :class:`PathSpec`."""
    if not isinstance(path, dict):
        raise InputError(f"{where}: path must be an object with points or keyframes; got {_type_name(path)}")
    _check_keys(path, _PATH_KEYS, where)
    has_points, has_keys = "points" in path, "keyframes" in path
    if has_points == has_keys:
        found = "both" if has_points else "neither"
        raise InputError(f"{where}: a path needs exactly one of points or keyframes; found {found}")
    interpolation = _choice(path, "interpolation", INTERPOLATIONS, "linear", where)
    easing = _choice(path, "easing", EASINGS, "none", where)
    metadata = dict(
        id=entity.get("id", f"entity{index}"),
        text=_optional_str(entity, "text", where),
        image=_optional_str(entity, "image", where),
        kind=_choice(entity, "kind", KINDS, "auto", where),
        interpolation=interpolation,
        easing=easing,
        where=where,
    )
    if has_points:
        if "time_unit" in path:
            raise InputError(f"{where}: time_unit applies to keyframes only; remove it or use keyframes")
        xy = _parse_xy_list(path["points"], where, "points")
        if len(xy) < 2:
            raise InputError(f"{where}: points has {len(xy)} point(s); a path needs at least 2")
        visible = np.ones(len(xy), dtype=bool)
        if "visible" in path:
            visible = _parse_visible(path["visible"], len(xy), where, "visible")
        xy = check_in_canvas(xy, canvas, where, "points", clip)
        return PathSpec(xy=xy, visible=visible, **metadata)

    if "visible" in path:
        raise InputError(f'{where}: with keyframes, put "visible" on each keyframe, not on the path')
    keyframes = path["keyframes"]
    if not isinstance(keyframes, list):
        raise InputError(f"{where}: keyframes must be a list of {{\"t\": time, \"xy\": [x, y]}}; got {_type_name(keyframes)}")
    if len(keyframes) < 2:
        raise InputError(f"{where}: keyframes has {len(keyframes)} keyframe(s); a path needs at least 2")
    times, rows, visible = [], [], []
    for i, key in enumerate(keyframes):
        name = f"keyframes[{i}]"
        if not isinstance(key, dict):
            raise InputError(f'{where}: {name} must be {{"t": time, "xy": [x, y]}}; got {json.dumps(key)}')
        _check_keys(key, _KEYFRAME_KEYS, f"{where}, {name}")
        for required in ("t", "xy"):
            if required not in key:
                raise InputError(f'{where}: {name} is missing field {required}; write {{"t": time, "xy": [x, y]}}')
        times.append(_number(key["t"], where, f"{name}.t"))
        rows.append(_parse_xy_list([key["xy"]], where, f"{name}.xy")[0])
        flag = key.get("visible", True)
        if not isinstance(flag, bool):
            raise InputError(f"{where}: {name}.visible must be true or false; got {json.dumps(flag)}")
        visible.append(flag)
    times_arr = np.array(times, dtype=np.float64)
    if times_arr[0] < 0:
        raise InputError(f"{where}: keyframes[0].t = {times_arr[0]:g} is negative; times start at 0")
    steps = np.diff(times_arr)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise InputError(
            f"{where}: keyframes[{i}].t = {times_arr[i]:g} does not come after keyframes[{i - 1}].t = "
            f"{times_arr[i - 1]:g}; keyframe times must strictly increase"
        )
    xy = check_in_canvas(np.array(rows, dtype=np.float64), canvas, where, "keyframes xy", clip)
    time_unit = _choice(path, "time_unit", TIME_UNITS, "frame", where)
    return PathSpec(xy=xy, visible=np.array(visible, dtype=bool), times=times_arr, time_unit=time_unit, **metadata)


def parse_track_json(data, *, clip: bool = False, source: str = "track.json") -> tuple[Canvas, float | None, list[PathSpec]]:
    """Validate a parsed ``track.json`` object. Returns (canvas, fps from the file or None, paths)."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: the top level must be a JSON object; got {_type_name(data)}")
    _check_keys(data, _TOP_KEYS, source)
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise InputError(f"{source}: version {version!r} is not supported; this tora2 reads version {FORMAT_VERSION}")
    canvas = parse_canvas(data, source)
    fps = None
    if "fps" in data:
        fps = _number(data["fps"], source, "fps")
        if fps <= 0:
            raise InputError(f"{source}: fps is {fps:g}; it must be positive")

    single = "path" in data
    if single and ("entities" in data or "paths" in data):
        raise InputError(f"{source}: a top-level path describes one entity; remove it or remove entities/paths")
    if not single and ("id" in data or "text" in data or "image" in data or "kind" in data):
        raise InputError(f"{source}: top-level id/text/image/kind go with a top-level path; put them in entities")
    if single:
        entities, paths = [{k: data[k] for k in ("id", "text", "image", "kind") if k in data}], [data["path"]]
    elif "entities" in data:
        entities = data["entities"]
        if not isinstance(entities, list) or not entities:
            raise InputError(f"{source}: entities must be a non-empty list of objects; got {json.dumps(entities)[:60]}")
        for i, entity in enumerate(entities):
            if not isinstance(entity, dict):
                raise InputError(f"{source}: entities[{i}] must be an object; got {_type_name(entity)}")
        if "paths" in data:
            paths = data["paths"]
            if not isinstance(paths, list):
                raise InputError(f"{source}: paths must be a list of path objects; got {_type_name(paths)}")
            if len(paths) != len(entities):
                raise InputError(
                    f"{source}: {len(paths)} path(s) for {len(entities)} entit{'y' if len(entities) == 1 else 'ies'}; "
                    f"give one path per entity (paths are matched to entities in order)"
                )
            inline = [i for i, entity in enumerate(entities) if "path" in entity]
            if inline:
                raise InputError(f"{source}: entities[{inline[0]}] has a path and the file has paths; use one or the other")
        else:
            missing = [i for i, entity in enumerate(entities) if "path" not in entity]
            if missing:
                raise InputError(f"{source}: entities[{missing[0]}] is missing field path; give each entity a path")
            paths = [entity["path"] for entity in entities]
    elif "paths" in data:
        paths = data["paths"]
        if not isinstance(paths, list) or not paths:
            raise InputError(f"{source}: paths must be a non-empty list of path objects")
        entities = [{} for _ in paths]
    else:
        raise InputError(f"{source}: missing field entities (or path for a single entity); see docs/track-format.md")

    specs, seen = [], set()
    for i, (entity, path) in enumerate(zip(entities, paths)):
        where = f"{source}, entity {i}"
        _check_keys(entity, _ENTITY_KEYS, where)
        if "id" in entity:
            if not isinstance(entity["id"], str) or not entity["id"]:
                raise InputError(f"{where}: id must be a non-empty string; got {json.dumps(entity['id'])}")
            where = f"{source}, entity {entity['id']!r}"
            if entity["id"] in seen:
                raise InputError(f"{where}: the id is used twice; give every entity its own id")
            seen.add(entity["id"])
        specs.append(parse_path(path, canvas, where=where, entity=entity, index=i, clip=clip))
    return canvas, fps, specs


# ---------------------------------------------------------------------------------------------- resolving


def resolve_path(spec: PathSpec, canvas: Canvas, *, num_frames: int, height: int, width: int, fps: float) -> Track:
    """A parsed path → a :class:`Track` with one point per output frame, in output pixels."""
    if spec.times is None:
        times = evenly_spaced_times(len(spec.xy), num_frames)
    else:
        times = spec.times * fps if spec.time_unit == "second" else spec.times
        last = times[-1]
        if last > num_frames - 1 + 1e-9:
            unit = f"{spec.times[-1]:g} s (frame {last:g} at {fps:g} fps)" if spec.time_unit == "second" else f"{last:g}"
            raise InputError(
                f"{spec.where}: the last keyframe t = {unit} is past the last frame {num_frames - 1} of a "
                f"{num_frames}-frame video; move it earlier or render more frames"
            )
    if spec.times is None and len(spec.xy) == num_frames and spec.easing == "none":
        xy = spec.xy.copy()
        visible = spec.visible.copy()
    else:
        xy = interpolate_keyframes(times, spec.xy, num_frames, spec.interpolation, spec.easing)
        visible = interpolate_visibility(times, spec.visible, num_frames)
    points = canvas.to_pixels(xy, height, width)  # (F, 2)
    return Track(id=spec.id, text=spec.text, image=spec.image, kind=spec.kind, points=points, visible=visible)


def check_output_size(num_frames: int, height: int, width: int) -> None:
    if num_frames < 2:
        raise InputError(f"num_frames is {num_frames}; a trajectory needs at least 2 frames")
    if height < 2 or width < 2:
        raise InputError(f"output size is {height}x{width} (HxW); both must be at least 2 pixels")


def tracks_from_json(
    data: dict,
    *,
    num_frames: int,
    height: int,
    width: int,
    clip: bool = False,
    fps: float = 8.0,
    source: str = "track.json",
) -> list[Track]:
    """Parse, validate and resolve a ``track.json`` object. ``fps`` in the file wins over ``fps``."""
    check_output_size(num_frames, height, width)
    canvas, file_fps, specs = parse_track_json(data, clip=clip, source=source)
    fps = file_fps if file_fps is not None else fps
    return [resolve_path(s, canvas, num_frames=num_frames, height=height, width=width, fps=fps) for s in specs]


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file with a one-line error that names the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"track file {path} does not exist: pass the path of a .json, .txt or .npy track")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); fix the syntax") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file; a track.json must be JSON text") from None


# ---------------------------------------------------------------------------------------------- writing


def track_json(tracks: list[Track], *, height: int, width: int) -> dict:
    """Tracks → a ``track.json`` object: a pixel canvas of the output size, one point per frame."""
    entities = []
    for track in tracks:
        path: dict = {"points": [[float(x), float(y)] for x, y in np.asarray(track.points)]}
        if not np.all(track.visible):
            path["visible"] = [bool(v) for v in track.visible]
        entity: dict = {"id": track.id}
        if track.text is not None:
            entity["text"] = track.text
        if track.image is not None:
            entity["image"] = track.image
        entity["kind"] = track.kind
        entity["path"] = path
        entities.append(entity)
    return {"version": FORMAT_VERSION, "canvas": {"width": width, "height": height}, "entities": entities}


def write_track_json(tracks: list[Track], path: str | os.PathLike, *, height: int, width: int) -> None:
    """Write tracks as ``track.json`` (pixel canvas ``width`` × ``height``, points per frame)."""
    write_text_atomic(path, json.dumps(track_json(tracks, height=height, width=width), indent=1) + "\n")
