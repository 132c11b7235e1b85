"""``tora2 entity ...``: prepare entity crops from photos and show them."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from cli.errors import handle_errors

app = typer.Typer(help="Entities: segment and crop reference photos, contact sheets.", no_args_is_help=True)


@app.command("prepare")
@handle_errors
def prepare(
    photo: Path = typer.Argument(..., help="The reference photo (PNG with alpha, JPEG, WebP)."),
    text: str = typer.Option(..., "--text", help="The entity phrase, as in the prompt: 'a ginger cat'."),
    output: Path = typer.Option(..., "-o", "--output", help="Entity directory to write (crop.png, mask.png, entity.json)."),
    box: Optional[str] = typer.Option(None, "--box", help="x0,y0,x1,y1 pixel box around the entity."),
    point: Optional[str] = typer.Option(None, "--point", help="x,y pixel on the entity."),
    kind: str = typer.Option("auto", "--kind", help="auto (face detection), human or object."),
    sam: Optional[Path] = typer.Option(None, "--sam", help="SAM checkpoint (.pth); without it GrabCut is used."),
    sam_type: str = typer.Option("vit_b", "--sam-type", help="SAM model type of --sam: vit_b, vit_l or vit_h."),
) -> None:
    """Segment PHOTO, crop the entity onto white, decide its kind, write an entity directory."""
    from entities.prepare import prepare_entity
    from entities.segment import parse_numbers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallbacks are reported from meta["warnings"] below, once
        entity = prepare_entity(
            photo, text,
            box=parse_numbers(box, 4, "--box") if box is not None else None,
            point=parse_numbers(point, 2, "--point") if point is not None else None,
            kind=kind, sam_checkpoint=sam, sam_model_type=sam_type,
        )
    for message in entity.meta.get("warnings", []):
        print(f"warning: {message}", file=sys.stderr)
    entity.save(output)
    typer.echo(f"{output}: {entity.kind}, box {','.join(map(str, entity.box))}, "
               f"segmenter {entity.meta['segmenter']}, detector {entity.meta['detector']}")


@app.command("show")
@handle_errors
def show(
    directories: List[Path] = typer.Argument(..., help="Entity directories written by `tora2 entity prepare`."),
    output: Path = typer.Option(..., "-o", "--output", help="Contact sheet image to write (PNG)."),
    columns: int = typer.Option(4, "--columns", min=1, help="Tiles per row."),
) -> None:
    """A contact sheet of entity crops, masks and labels."""
    from entities.prepare import load_prepared
    from entities.sheet import contact_sheet, save_image_atomic

    from tqdm import tqdm

    # Many directories (a whole dataset's entities) take a while to read: show progress then.
    loaded = [load_prepared(d) for d in tqdm(directories, desc="entities", unit="dir", disable=len(directories) < 16, file=sys.stderr)]
    sheet = contact_sheet(loaded, columns=columns)
    save_image_atomic(sheet, output)
    typer.echo(f"{output}: {len(directories)} entities")
