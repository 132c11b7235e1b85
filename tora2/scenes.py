"""A studio scene: drawn paths plus timing, as the ``track.json`` that every tora2 front end reads.

The studio's canvas records, per entity, the clicked positions (``points``, canvas pixels, in
order; a repeated position is a pause) and the entity's timing (first and last visible frame,
easing, interpolation). :func:`scene_track_json` turns that into a ``track.json`` object with
keyframes spread evenly over the visible frames and invisible keyframes outside them, and
:func:`scene_tracks` validates it with the same reader as ``tora2 track validate``. Loading goes the
other way (:func:`scene_from_file`): a track.json, a Tora ``.txt`` or a ``tora2 batch`` manifest
line becomes a scene again.

Model-free and torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tora2.errors import InputError

EASINGS = ("none", "in", "out", "in_out")
INTERPOLATIONS = ("linear", "smooth", "hold")


@dataclass
class SceneEntity:
    """One entity on the studio canvas: its drawn positions and timing (canvas pixels, frames)."""

    id: str
    text: str = ""
    image: str | None = None
    kind: str = "auto"
    points: list = field(default_factory=list)  # [[x, y], ...] in the order drawn
    start: int = 0  # first visible frame
    end: int | None = None  # last visible frame (None: the last frame)
    easing: str = "none"
    interpolation: str = "linear"


def scene_track_json(entities: list[SceneEntity], *, width: int, height: int, num_frames: int, fps: float) -> dict:
    """The scene as a ``track.json`` object (canvas = the output size, keyframes in frames)."""
    out = []
    for entity in entities:
        where = f"entity {entity.id!r}"
        if len(entity.points) < 2:
            raise InputError(f"{where}: draw at least 2 points of its path (click on the canvas)")
        end = num_frames - 1 if entity.end is None else int(entity.end)
        start = int(entity.start)
        if not 0 <= start < end <= num_frames - 1:
            raise InputError(f"{where}: appears at frame {start} and disappears after frame {end}; "
                             f"use 0 ≤ appear < disappear ≤ {num_frames - 1}")
        if entity.easing not in EASINGS:
            raise InputError(f"{where}: easing {entity.easing!r} is not one of {', '.join(EASINGS)}")
        if entity.interpolation not in INTERPOLATIONS:
            raise InputError(f"{where}: interpolation {entity.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
        points = [[round(float(x), 2), round(float(y), 2)] for x, y in entity.points]
        times = np.linspace(start, end, len(points))
        keyframes = [{"t": round(float(t), 4), "xy": xy} for t, xy in zip(times, points)]
        if start > 0:  # absent until it appears, at its first position
            keyframes.insert(0, {"t": 0, "xy": points[0], "visible": False})
            keyframes[1]["visible"] = True
        if end < num_frames - 1:  # absent after it disappears
            keyframes.append({"t": end + 1, "xy": points[-1], "visible": False})
        record: dict[str, Any] = {"id": entity.id, "path": {"keyframes": keyframes, "interpolation": entity.interpolation,
                                                            "easing": entity.easing}}
        if entity.text:
            record["text"] = entity.text
        if entity.image:
            record["image"] = entity.image
        if entity.kind != "auto":
            record["kind"] = entity.kind
        out.append(record)
    return {"version": 1, "canvas": {"width": width, "height": height}, "fps": fps, "entities": out}


def scene_tracks(data: dict, *, num_frames: int, height: int, width: int, fps: float):
    """Validate and resolve a scene's track.json with the reader of ``tora2 track validate``."""
    from tora2.trajectory import tracks_from_json

    return tracks_from_json(data, num_frames=num_frames, height=height, width=width, fps=fps, source="scene")


def scene_from_file(path: str | Path, *, num_frames: int, height: int, width: int, fps: float) -> list[SceneEntity]:
    """A saved scene back on the canvas: track.json, Tora .txt / point-track .npy, or a manifest line
    (one JSONL job, or a YAML file with one job). Paths come back as one point per frame."""
    from tora2.requests import resolve_entity

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".yaml", ".yml") or (suffix == ".json" and _is_manifest_job(path)):
        job = _manifest_job(path)
        rows = job.get("entities") or []
        where = f"{path.name}, entities"
    else:
        from tora2.trajectory import load_tracks

        count = len(load_tracks(path, num_frames=num_frames, height=height, width=width, fps=fps))
        rows = [{"path": f"{path}#{i}"} for i in range(count)]
        where = f"{path.name}, entity"
    entities = []
    for i, row in enumerate(rows):
        sizes = dict(num_frames=num_frames, height=height, width=width, fps=fps)
        try:
            request = resolve_entity(row, path.parent, f"{where}[{i}]", **sizes)
        except InputError as error:
            if "text is missing" not in str(error) or not isinstance(row, dict):
                raise
            request = resolve_entity({**row, "text": f"entity {i + 1}"}, path.parent, f"{where}[{i}]", **sizes)
        if request.trajectory is None:
            raise InputError(f"{path.name}: entity {i + 1} has no path; the studio needs a path for every entity")
        visible = np.asarray(request.visible, bool)
        frames = np.flatnonzero(visible)
        if frames.size == 0:
            raise InputError(f"{path.name}: entity {i + 1} is never visible")
        start, end = int(frames[0]), int(frames[-1])
        points = np.round(request.trajectory[start : end + 1], 2).tolist()
        entities.append(SceneEntity(id=f"entity{i + 1}", text=request.text, image=request.image, kind=request.kind,
                                    points=points, start=start, end=end))
    if not entities:
        raise InputError(f"{path.name} holds no entity")
    return entities


def manifest_line(prompt: str, entities: list[SceneEntity], track_file: str, *, num_frames: int, height: int,
                  width: int, fps: float, steps: int | None, guidance: float | None, seed: int) -> str:
    """The ``tora2 batch`` JSONL line of the same job (paths from ``track_file``, ``#id`` per entity)."""
    job: dict[str, Any] = {
        "prompt": prompt, "seed": seed, "num_frames": num_frames, "height": height, "width": width, "fps": fps,
        "entities": [{k: v for k, v in (("text", e.text or None), ("image", e.image), ("kind", e.kind),
                                          ("path", f"{track_file}#{e.id}")) if v is not None} for e in entities],
    }
    if steps is not None:
        job["num_inference_steps"] = steps
    if guidance is not None:
        job["guidance_scale"] = guidance
    return json.dumps(job)


def prompt_phrases(prompt: str, phrases: list[str]) -> list[tuple[str, str | None]]:
    """The prompt cut into (text, label) pieces: each entity phrase found is labelled with its entity
    (``entity<i>``), everything else ``None``; phrases not found are listed at the end as ``missing``."""
    lowered = prompt.lower()
    spans = []
    for i, phrase in enumerate(phrases):
        phrase = phrase.strip()
        at = lowered.find(phrase.lower()) if phrase else -1
        if at >= 0:
            spans.append((at, at + len(phrase), f"entity{i + 1}"))
    spans.sort()
    pieces, cursor = [], 0
    for start, end, label in spans:
        if start < cursor:
            continue  # overlapping phrases: the first one wins
        if start > cursor:
            pieces.append((prompt[cursor:start], None))
        pieces.append((prompt[start:end], label))
        cursor = end
    if cursor < len(prompt):
        pieces.append((prompt[cursor:], None))
    found = {label for _, _, label in spans}
    for i, phrase in enumerate(phrases):
        if phrase.strip() and f"entity{i + 1}" not in found:
            pieces.append((f"  [missing: {phrase.strip()!r}]", "missing"))
    return pieces


def _is_manifest_job(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "prompt" in data


def _manifest_job(path: Path) -> dict:
    from tora2.batch.manifest import read_manifest_data

    if path.suffix.lower() == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    jobs = read_manifest_data(path).get("jobs") or []
    if not jobs or not isinstance(jobs[0], dict):
        raise InputError(f"{path.name} has no job; a manifest line is one JSON object with a prompt")
    return jobs[0]


__all__ = ["EASINGS", "INTERPOLATIONS", "SceneEntity", "manifest_line", "prompt_phrases", "scene_from_file",
           "scene_track_json", "scene_tracks"]
