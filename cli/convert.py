"""``tora2 convert-tora SRC DST``: a Tora T2V diffusers folder → a Tora2 pipeline folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.errors import handle_errors


@handle_errors
def convert_tora(
    src: Path = typer.Argument(..., help="Tora T2V diffusers folder (model_index.json, transformer/, vae/, ...)."),
    dst: Path = typer.Argument(..., help="Destination folder for the Tora2 pipeline."),
    config: Optional[str] = typer.Option(None, "--config", help="Model config for the Tora2 widths (default: the one whose backbone matches)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing destination folder."),
):
    """Load Tora's transformer strictly, add the Tora2 modules at their identity init, copy the rest."""
    from tora2.pipelines.convert import convert_tora as convert

    report = convert(src, dst, config=config, overwrite=overwrite)
    typer.echo(
        f"wrote {report['destination']}: {report['loaded']} Tora tensors loaded, "
        f"{report['identity_init']} Tora2 tensors at identity init (config {report['config']})"
    )
