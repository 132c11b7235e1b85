"""``tora2 data ...``: training data. ``prepare`` turns a folder of videos into a clip manifest.

A thin call into :func:`entities.tracking.prepare_dataset`; docs/training.md describes the layout
of the video folder (captions, optional entity lists and masks) and the manifest it writes.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from cli.errors import handle_errors, progress_default

app = typer.Typer(help="Training data: prepare a clip manifest from videos.", no_args_is_help=True)


@app.callback()
def data() -> None:
    """Training data: prepare a clip manifest from videos (a group, so one command is not collapsed into it)."""


@app.command("prepare")
@handle_errors
def prepare(
    video_dir: Path = typer.Argument(..., help="Folder of videos; clip.txt beside clip.mp4 holds its caption."),
    output: Path = typer.Option(..., "--output", "-o", help="Manifest to write (.jsonl); references/ and masks/ go beside it."),
    frames: int = typer.Option(49, "--frames", "-f", help="Training window in frames (the config's data.num_frames)."),
    sam: Optional[Path] = typer.Option(None, "--sam", help="SAM checkpoint (.pth) for entity masks; without it: user masks, else GrabCut."),
    sam_type: str = typer.Option("vit_b", "--sam-type", help="SAM model type of --sam: vit_b, vit_l or vit_h."),
) -> None:
    """Captions, entity masks, tracks and out-of-window reference crops → a training manifest."""
    from entities.tracking import prepare_dataset
    from tora2.clips.prepare import summary_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report lists each designed fallback once, below
        report = prepare_dataset(video_dir, output, num_frames=frames, sam_checkpoint=sam, sam_model_type=sam_type,
                                progress=progress_default(None))
    for note in report.warnings:
        print(f"warning: {note}", file=sys.stderr)
    typer.echo(summary_table(report))
