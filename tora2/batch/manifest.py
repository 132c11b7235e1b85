"""Batch manifests: a YAML or JSONL file of generation jobs → validated :class:`Job` units.

YAML::

    model: null                # a model directory; null = the embedded default
    defaults:                  # any job field; a job's own value wins; sizes default to the model's
      height: 64
      width: 96
      num_frames: 9
      num_inference_steps: 2
      seeds: [0]
    jobs:
      - name: two-sprites
        prompt: a red balloon and a yellow star drift over a field
        seeds: [0, 1]
        entities:
          - {text: a red balloon, image: ../entities/balloon.png, path: ../tracks/tora_circle.txt}
          - {path: "../tracks/two_entities.json#cat"}   # text, image, kind from the track file
          - {text: a yellow star, path: {points: [[10, 10], [80, 50]]}}  # inline, output pixels

JSONL: one job object a line; an optional first line ``{"model": ..., "defaults": {...}}``.

Relative paths resolve against the manifest's folder. One job with ``k`` seeds becomes ``k`` units,
each with its own id (``name:seed<k>``), output file and ledger record.

Errors come at two levels. A manifest that cannot be read at all (not YAML/JSON, no jobs, unknown
top-level keys, two units writing the same output) raises :class:`InputError`. A single bad job
(missing image, malformed path, bad size) does not: its units carry ``error`` (one line) so the
runner records it as failed and the other jobs go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tora2.errors import InputError
from tora2.pipelines.video_io import DEFAULT_FPS
from tora2.requests import (
    MAX_FPS, MAX_FRAMES, MAX_GUIDANCE, MAX_SEED, MAX_SIDE, MAX_STEPS, EntityRequest, Job, check_integer, check_number,
    resolve_entity, resolve_path,
)

TOP_KEYS = ("version", "model", "defaults", "jobs")
HEADER_KEYS = ("version", "model", "defaults")  # the optional first line of a JSONL manifest
SETTING_KEYS = ("height", "width", "num_frames", "num_inference_steps", "guidance_scale", "fps", "seeds")
JOB_KEYS = ("name", "prompt", "negative_prompt", "entities", "output", "seed", *SETTING_KEYS)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VIDEO_SUFFIX = ".mp4"

# Values a job gets when neither it nor ``defaults`` sets them. Sizes come from the model
# (``sample_size``, its configured clip), steps and guidance from the pipeline (``None`` = its own).
BUILTIN_DEFAULTS: dict[str, Any] = {"fps": DEFAULT_FPS, "seeds": [0], "num_inference_steps": None, "guidance_scale": None}


@dataclass
class Manifest:
    path: Path
    model: str | None
    jobs: list[Job]  # units, in manifest order

    @property
    def valid(self) -> list[Job]:
        return [j for j in self.jobs if j.error is None]


# ---------------------------------------------------------------------------------------------- reading


def read_manifest(path: str | os.PathLike, sample_size: tuple[int, int, int] | None = None) -> Manifest:
    """Read, validate and expand a manifest (``.yaml``/``.yml`` or ``.jsonl``).

    sample_size: the model's (num_frames, height, width), used where a job sets no size.
    """
    path = Path(path)
    return parse_manifest(read_manifest_data(path), base=path.parent, source=str(path), sample_size=sample_size)


def read_manifest_data(path: str | os.PathLike) -> dict:
    """The manifest file as one object ``{model?, defaults?, jobs}``, not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist: pass a .yaml or .jsonl job file")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _read_yaml(path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    raise InputError(f"manifest {path}: unknown format {suffix or '(no extension)'!r}; use .yaml, .yml or .jsonl")


def manifest_model(data: dict, base: str | os.PathLike = ".", source: str = "manifest") -> str | None:
    """The manifest's ``model`` (a relative folder resolved against ``base``), or None (the default)."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError(f"{source}: model must be a path (string) or null; got {json.dumps(model)}")
    if model is not None and not os.path.isabs(model) and (Path(base) / model).exists():
        model = str(Path(base) / model)
    return model


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"manifest {path}{where} is not valid YAML: fix the syntax") from None
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not UTF-8 text; save it as UTF-8") from None
    if not isinstance(data, dict):
        raise InputError(f"manifest {path} must be a mapping with a 'jobs' list; got {type(data).__name__}")
    return data


def _read_jsonl(path: Path) -> dict:
    header: dict = {}
    jobs: list = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not UTF-8 text; save it as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"manifest {path} line {number}: not valid JSON ({error.msg}); one JSON object a line") from None
        if not isinstance(obj, dict):
            raise InputError(f"manifest {path} line {number}: expected a JSON object; got {type(obj).__name__}")
        if not jobs and not header and "prompt" not in obj and set(obj) <= set(HEADER_KEYS):
            header = obj
        else:
            jobs.append(obj)
    return {**header, "jobs": jobs}


def parse_manifest(
    data: dict, *, base: str | os.PathLike = ".", source: str = "manifest", sample_size: tuple[int, int, int] | None = None
) -> Manifest:
    """A parsed manifest object → :class:`Manifest` with one :class:`Job` per (job, seed)."""
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise InputError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_KEYS)}")
    if data.get("version", 1) != 1:
        raise InputError(f"{source}: version {data['version']!r} is not supported; this tora2 reads version 1")
    model = manifest_model(data, base, source)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InputError(f"{source}: defaults must be a mapping of job fields; got {type(defaults).__name__}")
    bad = sorted(k for k in defaults if k not in JOB_KEYS or k in ("name", "output"))
    if bad:
        allowed = ", ".join(k for k in JOB_KEYS if k not in ("name", "output"))
        raise InputError(f"{source}: defaults has unknown or per-job key(s) {', '.join(bad)}; allowed: {allowed}")
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise InputError(f"{source}: needs a non-empty 'jobs' list; add at least one job with a prompt")
    base = Path(base)
    builtin = dict(BUILTIN_DEFAULTS)
    if sample_size is not None:
        builtin.update(zip(("num_frames", "height", "width"), sample_size))

    units: list[Job] = []
    names: set[str] = set()
    for i, raw in enumerate(jobs):
        name = f"job{i + 1:03d}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str) and NAME_PATTERN.match(raw["name"]):
            name = raw["name"]
        if name in names:
            raise InputError(f"{source}: job name {name!r} is used twice; give every job its own name")
        names.add(name)
        where = f"{source}, job {name!r}"
        try:
            units.extend(_expand_job(raw, name, {**builtin, **defaults}, base, where, model, first_index=len(units)))
        except InputError as error:
            message = str(error).splitlines()[0]
            if not message.startswith(where):
                message = f"{where}: {message}"  # errors from the track readers name the file only
            fingerprint = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
            units.append(Job(id=name, name=name, index=len(units), fingerprint=fingerprint,
                             error=message))

    outputs: dict[str, str] = {}
    for unit in units:
        if unit.output is None:
            continue
        if unit.output in outputs:
            raise InputError(
                f"{source}: jobs {outputs[unit.output]!r} and {unit.id!r} both write {unit.output}; "
                "give them different 'output' names (use {seed} for several seeds)"
            )
        outputs[unit.output] = unit.id
    return Manifest(path=Path(source), model=model, jobs=units)


# ---------------------------------------------------------------------------------------------- one job


def _expand_job(raw, name: str, defaults: dict, base: Path, where: str, model: str | None, first_index: int) -> list[Job]:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a job must be a mapping with a prompt; got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(JOB_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(JOB_KEYS)}")
    if "name" in raw and not (isinstance(raw["name"], str) and NAME_PATTERN.match(raw["name"])):
        raise InputError(f"{where}: name {raw['name']!r} must be letters, digits, '.', '_' or '-', starting with a letter or digit")
    merged = {**defaults, **raw}
    if "seed" in raw or ("seed" in defaults and "seeds" not in raw):
        if "seeds" in raw and "seed" in raw:
            raise InputError(f"{where}: give either seed or seeds, not both")
        merged["seeds"] = [merged["seed"]]

    prompt = merged.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{where}: prompt is missing or empty; write what the video shows")
    negative = merged.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise InputError(f"{where}: negative_prompt must be text; got {json.dumps(negative)}")
    for key in ("height", "width", "num_frames"):
        if merged.get(key) is None:
            raise InputError(f"{where}: {key} is not set; set it in the job or in defaults")
    height = check_integer(merged["height"], "height", 8, MAX_SIDE, where)
    width = check_integer(merged["width"], "width", 8, MAX_SIDE, where)
    num_frames = check_integer(merged["num_frames"], "num_frames", 2, MAX_FRAMES, where)
    steps = merged.get("num_inference_steps")
    steps = None if steps is None else check_integer(steps, "num_inference_steps", 1, MAX_STEPS, where)
    guidance = merged.get("guidance_scale")
    guidance = None if guidance is None else check_number(guidance, "guidance_scale", 0.0, MAX_GUIDANCE, where)
    fps = check_number(merged.get("fps", DEFAULT_FPS), "fps", 0.0, MAX_FPS, where, open_low=True)
    seeds = merged.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise InputError(f"{where}: seeds must be a non-empty list of integers, e.g. seeds: [0, 1]")
    seeds = [check_integer(s, "seed", 0, MAX_SEED, where) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"{where}: seeds {seeds} repeat a value; each seed makes one video")

    entities_raw = merged.get("entities") or []
    if not isinstance(entities_raw, list):
        raise InputError(f"{where}: entities must be a list of {{text, image, path, kind}}; got {type(entities_raw).__name__}")
    entities = [
        resolve_entity(e, base, f"{where}, entities[{k}]", num_frames=num_frames, height=height, width=width, fps=fps)
        for k, e in enumerate(entities_raw)
    ]
    output = merged.get("output", name)
    if not isinstance(output, str) or not output.strip():
        raise InputError(f"{where}: output must be a file name such as {name}.mp4")

    files = sorted({p for e in entities_raw if isinstance(e, dict) for p in _files_of(e, base)})
    record = {
        "model": model, "prompt": prompt, "negative_prompt": negative, "height": height, "width": width,
        "num_frames": num_frames, "num_inference_steps": steps, "guidance_scale": guidance, "fps": fps,
        "entities": entities_raw, "files": {f: _file_digest(f) for f in files},
    }
    units = []
    for k, seed in enumerate(seeds):
        unit_output = _output_name(output, seed, several=len(seeds) > 1, where=where)
        fingerprint = hashlib.sha256(json.dumps({**record, "seed": seed}, sort_keys=True, default=str).encode()).hexdigest()
        units.append(Job(
            id=f"{name}:seed{seed}", name=name, index=first_index + k, prompt=prompt.strip(),
            negative_prompt=negative, entities=entities, seed=seed, height=height, width=width,
            num_frames=num_frames, num_inference_steps=steps, guidance_scale=guidance, fps=fps,
            output=unit_output, fingerprint=fingerprint[:16],
        ))
    return units


def _output_name(output: str, seed: int, *, several: bool, where: str) -> str:
    if "{seed}" in output:
        output = output.replace("{seed}", str(seed))
    elif several:
        stem, suffix = os.path.splitext(output)
        output = f"{stem}_seed{seed}{suffix}"
    if not output.lower().endswith(VIDEO_SUFFIX):
        output += VIDEO_SUFFIX
    parts = Path(output).parts
    if os.path.isabs(output) or ".." in parts or any(p.startswith(".") for p in parts):
        raise InputError(f"{where}: output {output!r} must be a relative path inside --out without '..' or hidden names")
    return Path(output).as_posix()


# ---------------------------------------------------------------------------------------------- helpers


def _files_of(entity: dict, base: Path) -> list[str]:
    files = []
    for key in ("image", "path"):
        value = entity.get(key)
        if isinstance(value, str) and value.strip():
            resolved = resolve_path(value.partition("#")[0] if key == "path" else value, base)
            if resolved.is_file():
                files.append(str(resolved))
            elif resolved.is_dir():
                files.extend(str(p) for p in sorted(resolved.iterdir()) if p.is_file())
    return files


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


__all__ = ["EntityRequest", "Job", "Manifest", "manifest_model", "parse_manifest", "read_manifest", "read_manifest_data"]
