"""``tora2 generate``: prompt + entities (image, path, phrase) → video file, a thin call into the pipeline.

Entities come from repeatable ``--entity IMG --path TRACK [--text PHRASE] [--kind K]`` (paired by
order) or from one ``--tracks track.json`` that lists every entity with its image, text and path.
Everything is validated before the model runs; the video, the optional overlay copy and the JSON
sidecar are written atomically.
"""

from __future__ import annotations

import json
import platform
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import numpy as np
import typer

from cli.errors import handle_errors
from tora2.errors import InputError

# γ/β held for the whole generation when they fit (small and mid-size models); 5B recomputes them.
MOTION_CACHE_BYTES = 1 << 30
OFFLOAD_MODES = ("model", "sequential")


@dataclass
class EntityRequest:
    text: str
    image: str | None
    kind: str
    track_file: str
    points: np.ndarray
    visible: np.ndarray
    meta: dict = field(default_factory=dict)


def _model_info(path: Path) -> SimpleNamespace:
    """Sizes and limits from the pipeline folder's config files (no weights loaded)."""
    try:
        transformer = json.loads((path / "transformer" / "config.json").read_text())
        vae = json.loads((path / "vae" / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path} is not a complete Tora2 pipeline folder ({error}); pass another --model") from None
    spatial = 2 ** (len(vae["block_out_channels"]) - 1)
    return SimpleNamespace(
        vae=SimpleNamespace(config=SimpleNamespace(**vae)),
        patch_size=int(transformer["patch_size"]),
        frames=int(transformer["sample_frames"]),
        height=int(transformer["sample_height"]) * spatial,
        width=int(transformer["sample_width"]) * spatial,
        max_entities=0 if transformer.get("entity_dim") is None else int(transformer["max_entities"]),
    )


def _pad(values: list[str], count: int, name: str, default: str | None) -> list[str | None]:
    if not values:
        return [default] * count
    if len(values) == 1 and name == "--kind":
        return values * count
    if len(values) != count:
        raise InputError(f"{len(values)} {name} value(s) for {count} --entity; give one {name} per --entity, in the same order")
    return list(values)


def _entity_requests(entity, path, text, kind, tracks_file, frames, height, width, fps) -> list[EntityRequest]:
    from tora2.specs import KINDS
    from tora2.trajectory import load_tracks

    if tracks_file is not None and (entity or path):
        raise InputError("pass either --tracks FILE or --entity/--path pairs, not both")
    for k in kind:
        if k not in KINDS:
            raise InputError(f"--kind {k!r} is not one of {', '.join(KINDS)}")
    requests = []
    if tracks_file is not None:
        if text or kind:
            raise InputError("--text/--kind go with --entity; in a --tracks file set each entity's text and kind")
        for track in load_tracks(tracks_file, num_frames=frames, height=height, width=width, fps=fps):
            if track.image is not None and not Path(track.image).is_file():
                raise InputError(f"{tracks_file}: entity {track.id!r} image {track.image} does not exist; fix its \"image\" field")
            phrase = track.text or (Path(track.image).stem.replace("_", " ") if track.image else track.id)
            requests.append(EntityRequest(phrase, track.image, track.kind, str(tracks_file), track.points, track.visible))
        return requests
    if len(entity) != len(path):
        raise InputError(f"{len(entity)} --entity and {len(path)} --path given; pair each --entity IMG with one --path TRACK")
    texts = _pad(text, len(entity), "--text", None)
    kinds = _pad(kind, len(entity), "--kind", "auto")
    for image, track_file, phrase, k in zip(entity, path, texts, kinds):
        if not Path(image).is_file():
            raise InputError(f"--entity image {image} does not exist; pass the path of a PNG/JPEG file")
        tracks = load_tracks(track_file, num_frames=frames, height=height, width=width, fps=fps)
        if len(tracks) != 1:
            raise InputError(f"--path {track_file} holds {len(tracks)} paths; give one path per --entity, or use --tracks for a multi-entity file")
        track = tracks[0]
        phrase = phrase or track.text or Path(image).stem.replace("_", " ")
        requests.append(EntityRequest(phrase, image, k if kind else track.kind, track_file, track.points, track.visible))
    return requests


def _plan(prompt, model_id, frames, height, width, steps, guidance, seed, output, requests, overlay, offload) -> str:
    lines = [
        f"model:    {model_id}",
        f"prompt:   {prompt!r}",
        f"video:    {frames} frames, {width}x{height} (WxH), steps {steps or 'default'}, guidance {guidance if guidance is not None else 'default'}, seed {seed}",
        f"output:   {output}" + (" (+ overlay)" if overlay else "") + (f", offload {offload}" if offload else ""),
        f"entities: {len(requests)}",
    ]
    for i, r in enumerate(requests):
        vis = int(r.visible.sum())
        lines.append(
            f"  [{i}] {r.text!r} kind={r.kind} image={r.image or '-'} path={r.track_file} "
            f"start=({r.points[0, 0]:.0f},{r.points[0, 1]:.0f}) end=({r.points[-1, 0]:.0f},{r.points[-1, 1]:.0f}) visible {vis}/{len(r.visible)}"
        )
    return "\n".join(lines)


def _versions() -> dict:
    import diffusers
    import torch
    import transformers

    import tora2

    return {"tora2": tora2.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _load_lora(pipe, lora: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not lora.is_file():
        raise InputError(f"--lora {lora} does not exist; pass a .safetensors LoRA file")
    try:
        state = load_file(str(lora))
    except (SafetensorError, OSError) as error:
        raise InputError(f"--lora {lora} is not a readable safetensors file ({error})") from None
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    try:
        pipe.transformer.load_lora_adapter(state, prefix=None, adapter_name="lora")
    except (ValueError, KeyError, RuntimeError) as error:
        raise InputError(f"--lora {lora} does not fit this model's transformer: {str(error).splitlines()[0]}") from None


@handle_errors
def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="What the video shows; mention each entity's phrase."),
    entity: List[str] = typer.Option([], "--entity", "-e", help="Reference image of one entity (repeatable; pairs with --path by order)."),
    path: List[str] = typer.Option([], "--path", help="Track file of that entity: track.json, Tora .txt or point-track .npy (repeatable)."),
    text: List[str] = typer.Option([], "--text", help="Phrase of that entity in the prompt (repeatable; default: the track's text or the image name)."),
    kind: List[str] = typer.Option([], "--kind", help="auto|human|object per entity (repeatable, or once for all)."),
    tracks: Optional[Path] = typer.Option(None, "--tracks", help="One track.json describing every entity (image, text, path)."),
    negative_prompt: Optional[str] = typer.Option(None, "--negative-prompt", help="What to steer away from."),
    model: Optional[Path] = typer.Option(None, "--model", help="Tora2 pipeline folder (default: the embedded model)."),
    lora: Optional[Path] = typer.Option(None, "--lora", help="LoRA weights (.safetensors) for the transformer."),
    frames: Optional[int] = typer.Option(None, "--frames", "-f", help="Number of frames (8k+1; default: the model's)."),
    height: Optional[int] = typer.Option(None, "--height", help="Height in pixels (multiple of 16; default: the model's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Width in pixels (multiple of 16; default: the model's)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps (default: the pipeline's, 50)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Text guidance scale (default: the pipeline's, 6)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: a random one, recorded in the sidecar)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second of the output (and of keyframe times in seconds)."),
    output: Path = typer.Option(Path("out.mp4"), "--output", "-o", help="out.mp4, out.gif or a folder/ for PNG frames."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write a copy with the paths drawn (out.overlay.mp4)."),
    offload: Optional[str] = typer.Option(None, "--offload", help="model|sequential CPU offload (needs a GPU for sequential)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate everything and print the plan; write nothing."),
):
    """Generate a video in which each entity looks like its image and moves along its path."""
    import torch

    from tora2.pipelines.conditioning import check_frame_size
    from tora2.pipelines.embedded import resolve_model
    from tora2.pipelines.video_io import check_writable, output_kind

    # 1. Validate everything that needs no weights.
    output_kind(output)
    check_writable(output)
    if offload is not None and offload not in OFFLOAD_MODES:
        raise InputError(f"--offload {offload!r} is not one of {', '.join(OFFLOAD_MODES)}")
    if offload == "sequential" and not torch.cuda.is_available():
        raise InputError("--offload sequential needs a CUDA GPU; on CPU run without --offload")
    if steps is not None and steps < 1:
        raise InputError(f"--steps {steps}: use at least 1")
    if fps <= 0:
        raise InputError(f"--fps {fps}: must be positive")
    if lora is not None and not lora.is_file():
        raise InputError(f"--lora {lora} does not exist; pass a .safetensors LoRA file")
    model_dir, model_id = resolve_model(model)
    info = _model_info(model_dir)
    frames = frames or info.frames
    height, width = height or info.height, width or info.width
    check_frame_size(info.vae, info.patch_size, frames, height, width)
    requests = _entity_requests(entity, path, text, kind, tracks, frames, height, width, fps)
    if len(requests) > info.max_entities:
        raise InputError(f"{len(requests)} entities given but model {model_id} supports at most {info.max_entities}; drop some")
    from entities.images import load_image

    for r in requests:  # unreadable or corrupt images fail here, before the model loads
        if r.image is not None:
            load_image(r.image)
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    plan = _plan(prompt, model_id, frames, height, width, steps, guidance, seed, output, requests, overlay, offload)
    if dry_run:
        typer.echo(plan)
        typer.echo("dry run: nothing generated, nothing written")
        return
    typer.echo(plan, err=True)

    # 2. Load the model and prepare the entities (segment, crop, encode; cached on disk).
    from entities import EntityCache, encode_entity, prepare_entity
    from tora2.pipelines.embedded import load_pipeline
    from tora2.pipelines.video_io import draw_paths, overlay_path, sidecar_path, write_json_atomic, write_video
    from tora2.trajectory.preview import entity_color

    timings = {}
    start = time.perf_counter()
    pipe, model_id = load_pipeline(model)
    if lora is not None:
        _load_lora(pipe, lora)
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    specs = []
    if requests and pipe.image_encoder is None:
        raise InputError(f"model {model_id} has no image_encoder to encode entity images; use a model folder that has one")
    cache = EntityCache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for r in requests:
            if r.image is None:
                from tora2.specs import EntitySpec

                specs.append(EntitySpec(r.text, trajectory=r.points, visible=r.visible, kind=r.kind))
                continue
            prepared = prepare_entity(r.image, r.text, kind=r.kind)
            spec = prepared.to_spec(trajectory=r.points, visible=r.visible)
            spec.tokens = encode_entity(prepared, pipe.image_encoder, pipe.face_encoder, cache=cache)
            r.kind, r.meta = prepared.kind, prepared.meta
            specs.append(spec)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    timings["entities_s"] = time.perf_counter() - start

    # 3. Generate.
    if offload == "model":
        pipe.enable_model_cpu_offload(device=None if torch.cuda.is_available() else "cpu")
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    elif torch.cuda.is_available():
        pipe.to("cuda")
    pipe.set_progress_bar_config(desc="denoising", file=sys.stderr)
    pipe.enable_motion_modulation_cache(max_bytes=MOTION_CACHE_BYTES)
    kwargs = {"num_inference_steps": steps} if steps is not None else {}
    if guidance is not None:
        kwargs["guidance_scale"] = guidance
    start = time.perf_counter()
    result = pipe(
        prompt, entities=specs, negative_prompt=negative_prompt, num_frames=frames, height=height, width=width,
        generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **kwargs,
    )
    timings["generate_s"] = time.perf_counter() - start
    timings["step_s"] = [round(s, 4) for s in result.step_seconds]
    video = result.frames[0]  # (F, H, W, 3) in [0, 1]

    # 4. Write: video, overlay, sidecar (each atomically).
    written = write_video(video, output, fps)
    if overlay:
        colors = [entity_color(i) for i in range(len(requests))]
        drawn = draw_paths(video, [r.points for r in requests], [r.visible for r in requests], colors)
        written += write_video(drawn, overlay_path(output), fps)
    sidecar = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seed": seed,
        "model": model_id,
        "lora": None if lora is None else str(lora),
        "num_frames": frames,
        "height": height,
        "width": width,
        "fps": fps,
        "num_inference_steps": len(result.step_seconds),
        "guidance_scale": guidance,
        "offload": offload,
        "entities": [
            {"text": r.text, "image": r.image, "kind": r.kind, "track": r.track_file,
             "points": np.round(r.points, 2).tolist(), "visible": r.visible.astype(bool).tolist(), **r.meta}
            for r in requests
        ],
        "outputs": [str(p) for p in (written if output_kind(output) != "dir" else [output])],
        "timings": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in timings.items()},
        "versions": _versions(),
    }
    write_json_atomic(sidecar, sidecar_path(output))
    typer.echo(f"wrote {output} ({frames} frames, {width}x{height}) in {timings['generate_s']:.1f}s; sidecar {sidecar_path(output)}")
