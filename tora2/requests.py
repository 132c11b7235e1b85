"""Generation requests as users give them, resolved once for every front end.

``tora2 generate`` flags, a ``--tracks`` file and ``tora2 batch`` manifest rows all become the same
:class:`Job` of :class:`EntityRequest` rows here, checked by the same rules (files exist, paths
resampled to the output size, every number finite and in range). ``entities.generation`` then turns
each ``EntityRequest`` into the pipeline's :class:`~tora2.specs.EntitySpec` (segment, encode, cache).

Model-free and torch-free: it runs before any weights load, so bad input fails fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tora2.errors import InputError
from tora2.specs import KINDS

ENTITY_KEYS = ("text", "image", "path", "kind")
MAX_SIDE = 8192  # pixels; anything larger is a typo, not a video (memory is checked separately)
MAX_FRAMES = 4096
MAX_STEPS = 10_000
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 100.0
MAX_FPS = 1000.0


@dataclass
class EntityRequest:
    """One entity as the user asked for it: a reference file, its phrase and kind, its path at the
    output size. Not yet segmented or encoded (that makes the pipeline's ``EntitySpec``)."""

    text: str
    image: str | None  # a photo or an entity directory (``tora2 entity prepare``); None = no reference
    kind: str  # "auto", "human" or "object"
    trajectory: np.ndarray | None  # (num_frames, 2) float64 output pixels, or None
    visible: np.ndarray | None  # (num_frames,) bool, or None
    source: str | None = None  # the track file the path came from, for plans and sidecars


@dataclass
class Job:
    """One unit of work: one prompt, one seed, one output file.

    ``error`` is set (one line) when the job is invalid; the batch runner then records it as failed
    without running it. ``fingerprint`` hashes every input (settings, file contents), so an edited
    job or a replaced image is a new job for the batch ledger.
    """

    id: str
    name: str
    index: int  # position of the unit in the manifest (sharding is by this order)
    prompt: str = ""
    negative_prompt: str | None = None
    entities: list[EntityRequest] = field(default_factory=list)
    seed: int = 0
    height: int = 0
    width: int = 0
    num_frames: int = 0
    num_inference_steps: int | None = None  # None: the pipeline's default
    guidance_scale: float | None = None  # None: the pipeline's default
    fps: float = 0.0
    output: str | None = None  # a path (relative to the batch output folder)
    fingerprint: str = ""
    error: str | None = None

    @property
    def shape(self) -> tuple:
        """Units with equal shapes can share one batched forward pass."""
        return (self.height, self.width, self.num_frames, self.num_inference_steps, self.guidance_scale,
                len(self.entities))


# ---------------------------------------------------------------------------------------------- numbers


def check_integer(value: Any, name: str, low: int, high: int, where: str = "") -> int:
    """``value`` as an int in [low, high], else a one-line error naming ``name`` and the valid range."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not float(value).is_integer():
        raise InputError(f"{prefix}{name} must be a whole number; got {_show(value)}")
    value = int(value)
    if not low <= value <= high:
        raise InputError(f"{prefix}{name} = {value} is out of range; use {low}..{high}")
    return value


def check_number(value: Any, name: str, low: float, high: float, where: str = "", *, open_low: bool = False) -> float:
    """``value`` as a finite float in [low, high] (``(low, high]`` with ``open_low``)."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{prefix}{name} must be a finite number; got {_show(value)}")
    if value < low or (open_low and value == low) or value > high:
        bound = f"greater than {low:g}" if open_low else f"at least {low:g}"
        raise InputError(f"{prefix}{name} = {value:g} is out of range; use a value {bound} and at most {high:g}")
    return float(value)


def check_flags(*, prompt: str, frames: int | None, height: int | None, width: int | None, steps: int | None,
                guidance: float | None, seed: int | None, fps: float) -> None:
    """``tora2 generate``'s numbers over their whole range (the manifest reader checks the same keys)."""
    if not prompt or not prompt.strip():
        raise InputError("--prompt is empty; write what the video shows, naming each entity")
    for name, value, low, high in (("--frames", frames, 1, MAX_FRAMES), ("--height", height, 8, MAX_SIDE),
                                   ("--width", width, 8, MAX_SIDE), ("--steps", steps, 1, MAX_STEPS),
                                   ("--seed", seed, 0, MAX_SEED)):
        if value is not None:
            check_integer(value, name, low, high)
    if guidance is not None:
        check_number(guidance, "--guidance", 0.0, MAX_GUIDANCE)
    check_number(fps, "--fps", 0.0, MAX_FPS, open_low=True)


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------------------------------------- entities


def resolve_entity(raw: Any, base: str | Path, where: str, *, num_frames: int, height: int, width: int,
                   fps: float) -> EntityRequest:
    """A ``{text, image, path, kind}`` mapping → :class:`EntityRequest`.

    ``path`` is a track file (``tracks.json#cat`` picks one entity; ``.txt``/``.npy`` too) or an inline
    ``{points: ...}`` path in output pixels. What the mapping leaves out comes from the track file
    (text, image, kind); the phrase falls back to the image's name. Relative paths start at ``base``.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{where}: an entity must be a mapping with text, image, path, kind; got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(ENTITY_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(ENTITY_KEYS)}")
    base = Path(base)
    text, image, kind = raw.get("text"), raw.get("image"), raw.get("kind")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise InputError(f"{where}: image must be a file or entity-directory path; got {_show(image)}")
        image = str(resolve_path(image, base))
    trajectory = visible = source = None
    if raw.get("path") is not None:
        track = _track(raw["path"], base, where, num_frames=num_frames, height=height, width=width, fps=fps)
        trajectory, visible = track.points, track.visible
        source = raw["path"] if isinstance(raw["path"], str) else None
        text = text if text is not None else track.text  # the track file's metadata fills the gaps
        kind = kind if kind is not None else track.kind
        if "image" not in raw and track.image is not None:  # ``image: null`` opts out
            image = track.image  # load_tracks resolved it against the track file's folder
            if not Path(image).exists():
                raise InputError(f"{where}: the track file names image {image}, which does not exist; fix it or set image here")
    if image is not None:
        check_reference(image, where)
    if text is None and image is not None:
        text = Path(image).stem.replace("_", " ")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: text is missing; give the entity's phrase from the prompt, e.g. text: a red balloon")
    kind = "auto" if kind is None else kind
    if kind not in KINDS:
        raise InputError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return EntityRequest(text=text.strip(), image=image, kind=kind, trajectory=trajectory, visible=visible, source=source)


def check_reference(image: str, where: str) -> None:
    """A reference must be an image file or an entity directory; say which it is not."""
    path = Path(image)
    if path.is_dir():
        if not (path / "entity.json").is_file():
            raise InputError(f"{where}: image {image} is a directory, not an entity directory (no entity.json); "
                             "pass an image file, or a folder made by `tora2 entity prepare`")
        return
    if not path.exists():
        raise InputError(f"{where}: image {image} does not exist; fix the path")
    if not path.is_file():
        raise InputError(f"{where}: image {image} is not a regular file; pass a PNG/JPEG/WebP file")


def flag_entities(images: list[str], paths: list[str], texts: list[str], kinds: list[str], tracks_file: str | None,
                  *, num_frames: int, height: int, width: int, fps: float) -> list[dict]:
    """``tora2 generate`` flags → entity mappings in manifest form (the same resolver reads both).

    Either repeatable ``--entity IMG --path TRACK [--text T] [--kind K]`` (paired by order; one
    ``--kind`` applies to all) or one ``--tracks FILE`` listing every entity.
    """
    if tracks_file is not None:
        if images or paths:
            raise InputError("pass either --tracks FILE or --entity/--path pairs, not both")
        if texts or kinds:
            raise InputError("--text/--kind go with --entity; in a --tracks file set each entity's text and kind")
        from tora2.trajectory import load_tracks

        count = len(load_tracks(tracks_file, num_frames=num_frames, height=height, width=width, fps=fps))
        return [{"path": f"{tracks_file}#{i}"} for i in range(count)]
    if len(images) != len(paths):
        raise InputError(f"{len(images)} --entity and {len(paths)} --path given; pair each --entity IMG with one --path TRACK")
    count = len(images)
    if len(kinds) == 1:
        kinds = kinds * count
    for name, values in (("--text", texts), ("--kind", kinds)):
        if values and len(values) != count:
            raise InputError(f"{len(values)} {name} value(s) for {count} --entity; give one {name} per --entity, in the same order")
    rows = []
    for i, (image, path) in enumerate(zip(images, paths)):
        row = {"image": image, "path": path}
        if texts:
            row["text"] = texts[i]
        if kinds:
            row["kind"] = kinds[i]
        rows.append(row)
    return rows


def _track(value, base: Path, where: str, *, num_frames: int, height: int, width: int, fps: float):
    """``file[#id]`` (json, txt, npy) or an inline track.json path object in output pixels."""
    from tora2.trajectory import load_tracks, tracks_from_json

    if isinstance(value, dict):
        data = {"version": 1, "canvas": {"width": width, "height": height}, "entities": [{"id": "path", "path": value}]}
        return tracks_from_json(data, num_frames=num_frames, height=height, width=width, fps=fps, source=f"{where}, path")[0]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: path must be a track file ('tracks.json#cat') or a {{points: ...}} mapping; got {_show(value)}")
    file, _, selector = value.partition("#")
    tracks = load_tracks(resolve_path(file, base), num_frames=num_frames, height=height, width=width, fps=fps)
    if selector:
        chosen = [t for t in tracks if t.id == selector]
        if not chosen and selector.isdigit() and int(selector) < len(tracks):
            chosen = [tracks[int(selector)]]
        if not chosen:
            ids = ", ".join(t.id for t in tracks)
            raise InputError(f"{where}: {file} has no entity {selector!r}; its entities are {ids}")
        return chosen[0]
    if len(tracks) != 1:
        ids = ", ".join(t.id for t in tracks)
        raise InputError(f"{where}: {file} holds {len(tracks)} entities ({ids}); pick one with '{file}#<id>'")
    return tracks[0]


def resolve_path(path: str, base: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


__all__ = [
    "EntityRequest", "Job", "check_flags", "check_integer", "check_number", "check_reference", "flag_entities", "resolve_entity",
]
