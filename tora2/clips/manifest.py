"""The clip manifest: one JSON object per line (JSONL), validated with the line number and field.

A line::

    {"video": "clips/cat.mp4", "caption": "a ginger cat chases a red ball",
     "start_frame": 0,
     "entities": [
       {"id": "cat", "text": "a ginger cat", "kind": "object",
        "references": ["refs/cat_0.png"], "masks": ["masks/cat_f000.png"],
        "track": {"points": [[120.5, 88.0], [122.0, 88.5], ...], "visible": [true, true, ...]}}
     ]}

Paths are relative to the manifest's folder (or absolute). ``track.points`` are pixel (x, y) in the
source video, one per source frame from frame 0; ``visible`` (optional, default all true) has the
same length. ``references`` are crops of the entity taken *outside* the training window (RGBA:
alpha = mask), so the model cannot copy-paste the reference into the video. ``masks`` are optional
(kept for provenance and re-cropping). ``kind`` is "object", "human" or "auto". docs/training.md
describes every field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tora2.errors import InputError
from tora2.io import write_text_atomic
from tora2.specs import KINDS

CLIP_FIELDS = ("video", "caption", "entities", "start_frame", "id", "meta")
ENTITY_FIELDS = ("id", "text", "kind", "references", "masks", "track")
TRACK_FIELDS = ("points", "visible")


@dataclass
class EntityRecord:
    """One entity of a clip as written in a training-data manifest (file paths and JSON-able fields);
    the dataset loads it into an ``EntitySample``."""

    id: str
    text: str
    kind: str
    references: list[Path]
    points: np.ndarray  # (F_src, 2) float64 source-video pixels
    visible: np.ndarray  # (F_src,) bool
    masks: list[Path] = field(default_factory=list)


@dataclass
class ClipRecord:
    video: Path
    caption: str
    entities: list[EntityRecord]
    start_frame: int = 0
    id: str = ""
    meta: dict = field(default_factory=dict)


def _fail(where: str, message: str) -> None:
    raise InputError(f"{where}: {message}")


def _path(value: Any, root: Path, where: str, must_exist: bool) -> Path:
    if not isinstance(value, str) or not value:
        _fail(where, f"must be a non-empty path string; got {value!r}")
    path = Path(value)
    path = path if path.is_absolute() else root / path
    if must_exist and not path.exists():
        _fail(where, f"file {path} does not exist; fix the path (relative paths start at the manifest's folder)")
    return path


def parse_entity(data: Any, root: Path, where: str, check_files: bool) -> EntityRecord:
    if not isinstance(data, dict):
        _fail(where, f"must be an object with {', '.join(ENTITY_FIELDS)}; got {type(data).__name__}")
    unknown = sorted(set(data) - set(ENTITY_FIELDS))
    if unknown:
        _fail(f"{where}.{unknown[0]}", f"unknown field; allowed: {', '.join(ENTITY_FIELDS)}")
    for name in ("text", "track"):
        if name not in data:
            _fail(f"{where}.{name}", "missing; every entity needs text and track")
    text = data["text"]
    if not isinstance(text, str) or not text.strip():
        _fail(f"{where}.text", f"must be a non-empty string (the entity's phrase); got {text!r}")
    kind = data.get("kind", "auto")
    if kind not in KINDS:
        _fail(f"{where}.kind", f"is {kind!r}; use one of {', '.join(KINDS)}")
    references = data.get("references", [])
    if isinstance(references, str):
        references = [references]
    if not isinstance(references, list):
        _fail(f"{where}.references", f"must be a list of image paths; got {type(references).__name__}")
    refs = [_path(r, root, f"{where}.references[{i}]", check_files) for i, r in enumerate(references)]
    masks = data.get("masks", [])
    if not isinstance(masks, list):
        _fail(f"{where}.masks", f"must be a list of image paths; got {type(masks).__name__}")
    mask_paths = [_path(m, root, f"{where}.masks[{i}]", check_files) for i, m in enumerate(masks)]

    track = data["track"]
    if not isinstance(track, dict) or "points" not in track:
        _fail(f"{where}.track", "must be an object {\"points\": [[x, y], ...], \"visible\": [...]}")
    unknown = sorted(set(track) - set(TRACK_FIELDS))
    if unknown:
        _fail(f"{where}.track.{unknown[0]}", f"unknown field; allowed: {', '.join(TRACK_FIELDS)}")
    try:
        points = np.asarray(track["points"], dtype=np.float64)
    except (TypeError, ValueError):
        _fail(f"{where}.track.points", "must be a list of [x, y] number pairs")
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        _fail(f"{where}.track.points", f"must be a list of at least 2 [x, y] pairs; got shape {points.shape}")
    if not np.isfinite(points).all():
        _fail(f"{where}.track.points", "has a NaN or infinite coordinate; use finite pixel coordinates")
    visible = track.get("visible")
    if visible is None:
        visible = np.ones(len(points), dtype=bool)
    else:
        if not isinstance(visible, list) or not all(isinstance(v, (bool, int)) for v in visible):
            _fail(f"{where}.track.visible", "must be a list of true/false, one per point")
        visible = np.asarray(visible, dtype=bool)
        if visible.shape != (len(points),):
            _fail(f"{where}.track.visible", f"has {len(visible)} values for {len(points)} points; give one per point")
    entity_id = data.get("id", "")
    if not isinstance(entity_id, str):
        _fail(f"{where}.id", f"must be a string; got {entity_id!r}")
    return EntityRecord(entity_id, text.strip(), kind, refs, points, visible, mask_paths)


def parse_clip(data: Any, root: Path, where: str, check_files: bool = True) -> ClipRecord:
    if not isinstance(data, dict):
        _fail(where, f"must be a JSON object; got {type(data).__name__}")
    unknown = sorted(set(data) - set(CLIP_FIELDS))
    if unknown:
        _fail(f"{where} field {unknown[0]!r}", f"unknown; allowed: {', '.join(CLIP_FIELDS)}")
    for name in ("video", "caption"):
        if name not in data:
            _fail(f"{where} field {name!r}", "missing; every clip needs video and caption")
    video = _path(data["video"], root, f"{where} field 'video'", check_files)
    caption = data["caption"]
    if not isinstance(caption, str):
        _fail(f"{where} field 'caption'", f"must be a string; got {type(caption).__name__}")
    start = data.get("start_frame", 0)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        _fail(f"{where} field 'start_frame'", f"must be an integer ≥ 0; got {start!r}")
    entities = data.get("entities", [])
    if not isinstance(entities, list):
        _fail(f"{where} field 'entities'", f"must be a list; got {type(entities).__name__}")
    records = [parse_entity(e, root, f"{where} field 'entities[{i}]'", check_files) for i, e in enumerate(entities)]
    clip_id = data.get("id") or video.stem
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        _fail(f"{where} field 'meta'", "must be an object")
    return ClipRecord(video, caption.strip(), records, start, str(clip_id), meta)


def read_manifest(path: str | os.PathLike, check_files: bool = True) -> list[ClipRecord]:
    """Every clip of a JSONL manifest; blank lines and ``#`` lines skipped. Errors name the line and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist; make one with `tora2 data prepare VIDEO_DIR -o {path.name}`")
    root = path.parent
    clips = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{where}: not valid JSON ({error.msg} at column {error.colno}); one JSON object per line") from None
        clips.append(parse_clip(data, root, where, check_files))
    if not clips:
        raise InputError(f"manifest {path} has no clips; add one JSON object per line")
    ids = [c.id for c in clips]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise InputError(f"manifest {path}: clip id {duplicate!r} appears twice; give each clip a unique 'id'")
    return clips


def clip_to_dict(clip: ClipRecord, root: Path | None = None) -> dict[str, Any]:
    """The JSON object of a clip; paths relative to ``root`` when they are inside it."""

    def rel(p: Path) -> str:
        if root is not None:
            try:
                return Path(os.path.relpath(p, root)).as_posix()
            except ValueError:
                pass
        return Path(p).as_posix()

    out: dict[str, Any] = {"id": clip.id, "video": rel(clip.video), "caption": clip.caption}
    if clip.start_frame:
        out["start_frame"] = clip.start_frame
    out["entities"] = [
        {
            "id": e.id,
            "text": e.text,
            "kind": e.kind,
            "references": [rel(r) for r in e.references],
            "masks": [rel(m) for m in e.masks],
            "track": {
                "points": [[round(float(x), 3), round(float(y), 3)] for x, y in e.points],
                "visible": [bool(v) for v in e.visible],
            },
        }
        for e in clip.entities
    ]
    if clip.meta:
        out["meta"] = clip.meta
    return out


def write_manifest(clips: list[ClipRecord], path: str | os.PathLike) -> Path:
    """Write clips as JSONL atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    return write_text_atomic(path, "".join(json.dumps(clip_to_dict(clip, root)) + "\n" for clip in clips))
