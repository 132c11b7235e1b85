"""``tora2 eval``: generate held-out cases with a model (or take the ground truth), track, score, report.

A thin call into :mod:`tora2.evaluation`; docs/results.md explains the metrics and the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.errors import handle_errors, progress_default
from tora2.errors import InputError
from tora2.io import write_json_atomic
from tora2.requests import MAX_GUIDANCE, check_number


@handle_errors
def evaluate(
    output: Path = typer.Option(..., "--output", "-o", help="results.json to write (summary and per-entity rows)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Tora2 pipeline folder (default: the embedded model)."),
    ground_truth: bool = typer.Option(False, "--ground-truth", help="Score the ground-truth renders instead of a model: the tracker's own error and the metrics' ceiling."),
    reconstruct: bool = typer.Option(False, "--reconstruct", help="Score the ground-truth renders after the model's autoencoder round trip: the ceiling of any denoiser on its latents."),
    split: str = typer.Option("heldout", "--split", help="Sprites and path seeds to draw cases from: heldout or train."),
    cases: int = typer.Option(10, "--cases", "-n", help="Cases per entity count (1, 2 and 3 entities)."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed of the cases and of generation."),
    frames: Optional[int] = typer.Option(None, "--frames", "-f", help="Frames per video (default: the model's sample size; 49 with --ground-truth)."),
    height: Optional[int] = typer.Option(None, "--height", help="Video height (default: the model's; 480 with --ground-truth)."),
    width: Optional[int] = typer.Option(None, "--width", help="Video width (default: the model's; 720 with --ground-truth)."),
    steps: int = typer.Option(50, "--steps", help="Denoising steps."),
    guidance_scale: float = typer.Option(6.0, "--guidance-scale", help="Text guidance scale."),
    reference_guidance_scale: Optional[float] = typer.Option(None, "--reference-guidance-scale", help="Extra guidance towards the entity references; 0 turns it off (default: the model's own, as tora2 generate uses: 2 for the embedded model)."),
    trajectory_guidance_scale: Optional[float] = typer.Option(None, "--trajectory-guidance-scale", help="Extra guidance towards the paths (off when left out)."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Also write a PNG: for the first cases of each entity count, the ground truth over the video with the requested paths drawn."),
    sheet_cases: int = typer.Option(2, "--sheet-cases", help="Cases per entity count on the --sheet PNG."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="A progress bar over the cases (default: on when stderr is a terminal)."),
) -> None:
    """Evaluate trajectory error, binding accuracy and appearance similarity on 1, 2 and 3 entities."""
    from tora2.evaluation import (
        ColorHistogram,
        appearance_embedding_name,
        case_sheet,
        first_cases,
        format_table,
        make_cases,
        pipeline_generator,
        pretrained_semantic_encoder,
        reconstruction_generator,
        run_evaluation,
    )

    if output.suffix.lower() != ".json":
        raise InputError(f"output {output} must end in .json; name it results.json or similar")
    if ground_truth and model is not None:
        raise InputError("--ground-truth scores the synthetic renders, so --model would be unused; pass one of them")
    if ground_truth and reconstruct:
        raise InputError("--ground-truth scores the raw renders and --reconstruct their autoencoder round trip; pass one of them")
    if cases < 1:
        raise InputError(f"--cases is {cases}; evaluate at least 1 case per entity count")
    if steps < 1:
        raise InputError(f"--steps is {steps}; use at least 1")
    check_number(guidance_scale, "--guidance-scale", 0.0, MAX_GUIDANCE)
    for name, value in (("--reference-guidance-scale", reference_guidance_scale), ("--trajectory-guidance-scale", trajectory_guidance_scale)):
        if value is not None:
            check_number(value, name, 0.0, MAX_GUIDANCE)
    if sheet is not None and sheet.suffix.lower() != ".png":
        raise InputError(f"--sheet {sheet} must end in .png")
    if sheet_cases < 1:
        raise InputError(f"--sheet-cases is {sheet_cases}; use at least 1 (or leave out --sheet)")
    progress = progress_default(progress)
    encoder = None
    if ground_truth:
        num_frames, default_height, default_width = 49, 480, 720
        model_id = "ground-truth"
    else:
        from tora2.progress import set_loading_bars
        from tora2.pipelines.embedded import load_pipeline

        set_loading_bars(progress)
        pipe, model_id = load_pipeline(model)
        pipe.set_progress_bar_config(disable=True)  # one bar over the cases, not one per video
        num_frames, default_height, default_width = pipe.default_size
        encoder = pipe.image_encoder if pretrained_semantic_encoder(pipe.image_encoder) else None
    num_frames = frames if frames is not None else num_frames
    height = height if height is not None else default_height
    width = width if width is not None else default_width
    if encoder is None:
        encoder = ColorHistogram()
        typer.echo("note: no pretrained semantic image encoder here; appearance similarity compares colour "
                   "histograms (docs/results.md)", err=True)
    case_list = make_cases(cases, num_frames, height, width, split=split, seed=seed)
    if ground_truth:
        generate = lambda case: case.frames  # noqa: E731
    elif reconstruct:
        generate = reconstruction_generator(pipe)
    else:
        from tora2.pipelines.pipeline_tora2 import MODEL_DEFAULT

        reference_guidance_scale = pipe.effective_reference_guidance(
            MODEL_DEFAULT if reference_guidance_scale is None else reference_guidance_scale)
        generate = pipeline_generator(pipe, steps, guidance_scale, seed, reference_guidance_scale=reference_guidance_scale,
                                      trajectory_guidance_scale=trajectory_guidance_scale)
    shown = first_cases(case_list, sheet_cases) if sheet is not None else set()
    videos: dict = {}

    def keep(case, video):
        if case.id in shown:
            videos[case.id] = video

    report = run_evaluation(case_list, generate, encoder=encoder, progress=progress, keep=keep,
                            backdrop_known=ground_truth or reconstruct)
    mode = "ground-truth" if ground_truth else "reconstruct" if reconstruct else "generate"
    report["settings"] = {"model": model_id, "mode": mode, "split": split, "cases_per_count": cases, "seed": seed, "num_frames": num_frames,
                          "height": height, "width": width, "steps": steps if mode == "generate" else None,
                          "guidance_scale": guidance_scale if mode == "generate" else None,
                          "reference_guidance_scale": reference_guidance_scale if mode == "generate" else None,
                          "trajectory_guidance_scale": trajectory_guidance_scale if mode == "generate" else None,
                          "appearance_embedding": appearance_embedding_name(encoder)}
    write_json_atomic(report, output, indent=1)
    typer.echo(format_table(report["summary"]))
    typer.echo(f"wrote {output}")
    if sheet is not None:
        from tora2.io import atomic_output

        with atomic_output(sheet) as tmp:
            case_sheet(case_list, videos).save(tmp, format="PNG")
        typer.echo(f"wrote {sheet}")
