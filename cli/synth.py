"""``tora2 data synth``: write synthetic emoji clips (mp4) and their clip manifest.

A thin call into :func:`tora2.synthetic.write_dataset`; docs/synthetic-data.md describes the data.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.errors import handle_errors, progress_default


@handle_errors
def synth(
    output: Path = typer.Option(..., "--output", "-o", help="New folder to write: clips/, references/, manifest.jsonl."),
    clips: int = typer.Option(..., "--clips", "-n", help="Number of clips."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed: the same seed writes the same clips."),
    frames: int = typer.Option(49, "--frames", "-f", help="Frames per clip."),
    height: int = typer.Option(480, "--height", help="Frame height in pixels (even)."),
    width: int = typer.Option(720, "--width", help="Frame width in pixels (even)."),
    split: str = typer.Option("train", "--split", help="train: training sprites and path seeds; heldout: the held-out ones."),
) -> None:
    """Synthesize clips of 1–3 emoji entities on random smooth paths over varied backgrounds."""
    from tora2.synthetic import write_dataset

    manifest = write_dataset(output, clips, seed=seed, split=split, num_frames=frames, height=height, width=width,
                             progress=progress_default(None))
    typer.echo(f"wrote {manifest}: {clips} clip(s), {frames} frames at {height}x{width} (HxW), split {split}")
