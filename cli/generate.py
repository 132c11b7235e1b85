"""``tora2 generate``: one job of the machinery ``tora2 batch`` runs (``entities.generation``).

Entities come from repeatable ``--entity IMG --path TRACK [--text PHRASE] [--kind K]`` (paired by
order) or from one ``--tracks track.json`` that lists every entity with its image, text and path.
Everything is checked before the model loads (sizes, memory, files); the video, the optional overlay
copy and the JSON sidecar are written atomically.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from cli.errors import handle_errors, progress_default

FRAMES_HELP = "Number of frames (default: the model's): any odd number for the embedded model, 8k+1 (e.g. 49) for CogVideoX-based ones."
SIZE_HELP = "in pixels (default: the model's; a multiple of its VAE × patch step, 8 for the embedded model)."


@handle_errors
def generate(
    prompt: str = typer.Option(..., "--prompt", "-p", help="What the video shows; mention each entity's phrase."),
    entity: List[str] = typer.Option([], "--entity", "-e", help="Reference image (or `tora2 entity prepare` folder) of one entity; repeatable, pairs with --path by order."),
    path: List[str] = typer.Option([], "--path", help="Track file of that entity: track.json[#id], Tora .txt or point-track .npy (repeatable)."),
    text: List[str] = typer.Option([], "--text", help="Phrase of that entity in the prompt (repeatable; default: the track's text or the image name)."),
    kind: List[str] = typer.Option([], "--kind", help="auto|human|object per entity (repeatable, or once for all)."),
    tracks: Optional[Path] = typer.Option(None, "--tracks", help="One track.json describing every entity (image, text, path)."),
    negative_prompt: Optional[str] = typer.Option(None, "--negative-prompt", help="What to steer away from."),
    model: Optional[Path] = typer.Option(None, "--model", help="Tora2 pipeline folder (default: the embedded model)."),
    lora: Optional[Path] = typer.Option(None, "--lora", help="LoRA weights (.safetensors) for the transformer."),
    frames: Optional[int] = typer.Option(None, "--frames", "-f", help=FRAMES_HELP),
    height: Optional[int] = typer.Option(None, "--height", help="Height " + SIZE_HELP),
    width: Optional[int] = typer.Option(None, "--width", help="Width " + SIZE_HELP),
    steps: Optional[int] = typer.Option(None, "--steps", help="Denoising steps, 1 to the model's scheduler's training timesteps (1000 for CogVideoX and the embedded model; default: the pipeline's, 50)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", "--guidance-scale", help="Text guidance scale, 0–100 (default: the pipeline's, 6)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed ≥ 0 (default: a random one, recorded in the sidecar)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second of the output (and of keyframe times in seconds)."),
    output: Path = typer.Option(Path("out.mp4"), "--output", "-o", help="out.mp4, out.gif or a folder/ for PNG frames."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write a copy with the paths drawn (out.overlay.mp4)."),
    offload: Optional[str] = typer.Option(None, "--offload", help="model|sequential CPU offload (sequential needs a GPU)."),
    sam: Optional[Path] = typer.Option(None, "--sam", help="SAM checkpoint (.pth) to segment entity photos; without it GrabCut is used."),
    sam_type: str = typer.Option("vit_b", "--sam-type", help="SAM model type of --sam: vit_b, vit_l or vit_h."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: on when stderr is a terminal)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything, print the plan and memory estimate; write nothing."),
):
    """Generate a video in which each entity looks like its image and moves along its path."""
    from entities.generation import GenerationBackend, check_job, write_outputs
    from tora2.pipelines.model_info import format_bytes
    from tora2.pipelines.video_io import check_writable, output_kind, sidecar_path
    from tora2.requests import Job, check_flags, flag_entities, resolve_entity

    # 1. Check everything that needs no weights.
    check_flags(prompt=prompt, frames=frames, height=height, width=width, steps=steps, guidance=guidance, seed=seed, fps=fps)
    output_kind(output)
    check_writable(output)
    progress = progress_default(progress)
    backend = GenerationBackend(
        None if model is None else str(model), offload=offload, lora=None if lora is None else str(lora),
        progress=progress, sam_checkpoint=None if sam is None else str(sam), sam_model_type=sam_type,
    )
    info = backend.info
    frames, height, width = frames or info.frames, height or info.height, width or info.width
    sizes = dict(num_frames=frames, height=height, width=width, fps=fps)
    rows = flag_entities(entity, path, text, kind, None if tracks is None else str(tracks), **sizes)
    where = (lambda i: f"--tracks {tracks}, entity {i + 1}") if tracks is not None else (lambda i: f"--entity {i + 1}")
    requests = [resolve_entity(row, Path.cwd(), where(i), **sizes) for i, row in enumerate(rows)]
    seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
    job = Job(id="generate", name=output.stem, index=0, prompt=prompt.strip(), negative_prompt=negative_prompt,
              entities=requests, seed=seed, height=height, width=width, num_frames=frames, num_inference_steps=steps,
              guidance_scale=guidance, fps=fps, output=str(output))
    estimate = check_job(job, info)
    plan = _plan(job, backend.model_id, info, estimate, overlay, offload, format_bytes)
    if dry_run:
        typer.echo(plan)
        typer.echo("dry run: nothing generated, nothing written")
        return
    typer.echo(plan, err=True)

    # 2. Load, prepare the entities (segment, crop, encode; cached on disk), generate, write.
    timings = {}
    start = time.perf_counter()
    backend.load()
    timings["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    specs = backend.prepare(job)
    timings["entities_s"] = time.perf_counter() - start
    start = time.perf_counter()
    result = backend.generate([job], [specs])[0]
    timings["generate_s"] = time.perf_counter() - start
    write_outputs(job, result, output, backend.model_id, overlay=overlay, timings=timings, extra=backend.sidecar_extra())
    typer.echo(f"wrote {output} ({frames} frames, {width}x{height}) in {timings['generate_s']:.1f}s; sidecar {sidecar_path(output)}")


def _plan(job, model_id: str, info, estimate: int, overlay: bool, offload: str | None, format_bytes) -> str:
    steps = job.num_inference_steps or "default"
    guidance = job.guidance_scale if job.guidance_scale is not None else "default"
    reference = f", reference guidance {info.reference_guidance_scale:g} (the model's)" if info.reference_guidance_scale else ""
    lines = [
        f"model:    {model_id}",
        f"prompt:   {job.prompt!r}",
        f"video:    {job.num_frames} frames, {job.width}x{job.height} (WxH), steps {steps}, guidance {guidance}{reference}, seed {job.seed}",
        f"output:   {job.output}" + (" (+ overlay)" if overlay else "") + (f", offload {offload}" if offload else ""),
        f"memory:   about {format_bytes(estimate)} at peak (estimate)",
        f"entities: {len(job.entities)}",
    ]
    for i, r in enumerate(job.entities):
        where = "-" if r.trajectory is None else (
            f"start=({r.trajectory[0, 0]:.0f},{r.trajectory[0, 1]:.0f}) end=({r.trajectory[-1, 0]:.0f},{r.trajectory[-1, 1]:.0f}) "
            f"visible {int(r.visible.sum())}/{len(r.visible)}")
        lines.append(f"  [{i}] {r.text!r} kind={r.kind} image={r.image or '-'} path={r.source or '-'} {where}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(typer.run(generate))
