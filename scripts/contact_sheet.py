"""A contact sheet of a generated video: every frame, enlarged, once plain and once with the requested paths.

    python scripts/contact_sheet.py out.mp4 -o out.contact.png [--scale 4]

Reads the video and the JSON sidecar ``tora2 generate`` wrote beside it (``out.mp4.json``: each
entity's requested points, visibility and text). Row 1: the frames as generated; row 2: the same
frames with each entity's whole path as a thin line in its colour and a ring (not a dot, so the
sprite under it stays visible) where the entity was asked to be in that frame. `make demo` writes
one; docs/results.md and the README show the demo's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tora2.errors import InputError
from tora2.io import atomic_output
from tora2.pipelines.video_io import sidecar_path
from tora2.trajectory.preview import sheet_rows, stack_rows


def read_frames(video: Path) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of an mp4/gif."""
    import imageio.v3 as iio

    if not video.is_file():
        raise InputError(f"video {video} does not exist; generate one first (make demo writes out.mp4)")
    frames = np.asarray(iio.imread(video, index=None))
    return frames[..., :3] if frames.ndim == 4 else frames[..., None].repeat(3, -1)


def contact_sheet(frames: np.ndarray, entities: list[dict], scale: int = 4) -> Image.Image:
    """frames (F, H, W, 3) uint8 + sidecar entities → the two-row sheet."""
    paths = [np.asarray(e["points"], dtype=float) for e in entities]
    visible = [np.asarray(e.get("visible", [True] * len(e["points"])), dtype=bool) for e in entities]
    return stack_rows(list(sheet_rows(frames, paths, visible, scale)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/contact_sheet.py", description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--scale", type=int, default=4, help="enlargement per frame (nearest neighbour)")
    args = parser.parse_args(argv)
    try:
        if args.output.suffix.lower() != ".png":
            raise InputError(f"output {args.output} must end in .png")
        if args.scale < 1:
            raise InputError(f"--scale is {args.scale}; use 1 or more")
        sidecar = sidecar_path(args.video)
        if not sidecar.is_file():
            raise InputError(f"{sidecar} does not exist; the sheet needs the sidecar tora2 generate writes beside the video")
        entities = json.loads(sidecar.read_text())["entities"]
        sheet = contact_sheet(read_frames(args.video), entities, args.scale)
        with atomic_output(args.output) as tmp:
            sheet.save(tmp, format="PNG")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
