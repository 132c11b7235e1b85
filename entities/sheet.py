"""Contact sheet: one tile per prepared entity — crop on white, its mask, and a label."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from entities.prepare import PreparedEntity
from tora2.io import atomic_output

TILE = 160  # crop and mask are each drawn TILE×TILE
LABEL_HEIGHT = 36
GAP = 8


def contact_sheet(entities: Sequence[PreparedEntity], columns: int = 4) -> Image.Image:
    """Crops (top) with masks (bottom) and "text · kind · segmenter" labels, ``columns`` per row."""
    if len(entities) == 0:
        raise ValueError("contact_sheet needs at least one entity")
    columns = max(1, min(columns, len(entities)))
    rows = (len(entities) + columns - 1) // columns
    cell_w, cell_h = TILE + GAP, 2 * TILE + LABEL_HEIGHT + GAP
    sheet = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, entity in enumerate(entities):
        x = GAP + (i % columns) * cell_w
        y = GAP + (i // columns) * cell_h
        crop = entity.crop.convert("RGB").resize((TILE, TILE), Image.BICUBIC)
        mask = Image.fromarray(entity.mask.astype(np.uint8) * 255, "L")
        mask.thumbnail((TILE, TILE), Image.NEAREST)
        sheet.paste(crop, (x, y))
        mask_tile = Image.new("RGB", (TILE, TILE), (40, 40, 40))
        mask_tile.paste(mask.convert("RGB"), ((TILE - mask.width) // 2, (TILE - mask.height) // 2))
        sheet.paste(mask_tile, (x, y + TILE))
        label = f"{entity.text[:24]}\n{entity.kind} · {entity.meta.get('segmenter', '?')}"
        draw.multiline_text((x + 2, y + 2 * TILE + 3), label, fill=(0, 0, 0), font=font, spacing=2)
    return sheet


def save_image_atomic(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save through a temporary file in the same folder, then rename: no partial output files."""
    path = Path(path)
    with atomic_output(path, suffix=path.suffix or ".png") as tmp:
        image.save(tmp)
    return path
