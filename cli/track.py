"""``tora2 track ...``: validate, convert, render and preview track files.

Each command is a thin call into :mod:`tora2.trajectory`. Frame count and size default to what the
track file itself declares (its pixel canvas, its number of points); pass ``--frames``,
``--height`` and ``--width`` to resolve it for a particular video.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import typer

from cli.errors import handle_errors
from tora2.errors import InputError
from tora2.io import atomic_output

app = typer.Typer(help="Track files: validate, convert, render flow, preview.", no_args_is_help=True)

FRAMES = typer.Option(None, "--frames", "-f", help="Number of video frames (default: the track's own length).")
HEIGHT = typer.Option(None, "--height", help="Video height in pixels (default: the track's canvas).")
WIDTH = typer.Option(None, "--width", help="Video width in pixels (default: the track's canvas).")
CLIP = typer.Option(False, "--clip", help="Clamp points outside the canvas (with a warning) instead of failing.")
FPS = typer.Option(8.0, "--fps", help="Frames per second, for keyframe times in seconds (a file's own fps wins).")


def _show_warnings(caught: list) -> None:
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)


def _resolve_size(paths: list[Path], frames, height, width, fps) -> tuple[int, int, int]:
    """Flags first, then what the (first) track file declares; a clear error when neither says."""
    from tora2.trajectory.importers import natural_size

    natural_frames, natural_height, natural_width = natural_size(paths[0], fps=fps)
    frames = frames if frames is not None else natural_frames
    height = height if height is not None else natural_height
    width = width if width is not None else natural_width
    if frames is None:
        raise InputError(f"{paths[0]} does not say how many frames it has; pass --frames")
    if height is None or width is None:
        raise InputError(f"{paths[0]} has no pixel canvas (normalized or .npy coordinates); pass --height and --width")
    return frames, height, width


def _load(paths: list[Path], frames, height, width, clip, fps):
    from tora2.trajectory import load_tracks

    frames, height, width = _resolve_size(paths, frames, height, width, fps)
    tracks = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in paths:
            tracks += load_tracks(path, num_frames=frames, height=height, width=width, clip=clip, fps=fps)
    _show_warnings(caught)
    return tracks, frames, height, width


@app.command("validate")
@handle_errors
def validate(
    track: Path = typer.Argument(..., help="A track file: .json, Tora .txt or .npy."),
    frames: Optional[int] = FRAMES,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    clip: bool = CLIP,
    fps: float = FPS,
) -> None:
    """Check a track file; print one line per entity, or one error line (exit code 2)."""
    tracks, frames, height, width = _load([track], frames, height, width, clip, fps)
    typer.echo(f"ok: {track}: {len(tracks)} entit{'y' if len(tracks) == 1 else 'ies'}, {frames} frames at {height}x{width} (HxW)")
    for t in tracks:
        hidden = int((~t.visible).sum())
        (x0, y0), (x1, y1) = t.points[0], t.points[-1]
        typer.echo(
            f"  {t.id}: kind={t.kind} text={t.text!r} from ({x0:.1f}, {y0:.1f}) to ({x1:.1f}, {y1:.1f})"
            + (f", hidden in {hidden} frame(s)" if hidden else "")
        )


@app.command("convert")
@handle_errors
def convert(
    inputs: List[Path] = typer.Argument(..., help="One or more .txt / .npy / .json tracks; their entities are joined."),
    output: Path = typer.Option(..., "--output", "-o", help="The track.json to write."),
    frames: Optional[int] = FRAMES,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    clip: bool = CLIP,
    fps: float = FPS,
) -> None:
    """Convert tracks to track.json (pixel canvas, one point per frame). With --frames/--height/--width
    a Tora .txt is resampled and scaled exactly as Tora does for that video."""
    from tora2.trajectory import write_track_json

    if output.suffix.lower() != ".json":
        raise InputError(f"output {output} must end in .json; name the file track.json or similar")
    tracks, frames, height, width = _load(list(inputs), frames, height, width, clip, fps)
    seen: dict[str, int] = {}
    for t in tracks:  # two inputs may both have a "track0" or the same stem
        if t.id in seen:
            seen[t.id] += 1
            t.id = f"{t.id}_{seen[t.id]}"
        else:
            seen[t.id] = 0
    write_track_json(tracks, output, height=height, width=width)
    typer.echo(f"wrote {output}: {len(tracks)} entities, {frames} frames, {width}x{height} canvas")


@app.command("render")
@handle_errors
def render(
    track: Path = typer.Argument(..., help="A track file: .json, Tora .txt or .npy."),
    output: Path = typer.Option(..., "--output", "-o", help="The .npy file to write: float32 (F, H, W, 2)."),
    frames: Optional[int] = FRAMES,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    entity: Optional[str] = typer.Option(None, "--entity", "-e", help="Render only this entity id (default: all, jointly)."),
    clip: bool = CLIP,
    fps: float = FPS,
) -> None:
    """Render the joint (or one entity's) flow map with Tora's blur and save it as .npy."""
    import numpy as np

    from tora2.trajectory import render_flow

    if output.suffix.lower() != ".npy":
        raise InputError(f"output {output} must end in .npy")
    tracks, frames, height, width = _load([track], frames, height, width, clip, fps)
    if entity is not None:
        chosen = [t for t in tracks if t.id == entity]
        if not chosen:
            raise InputError(f"{track}: no entity {entity!r}; ids are {', '.join(t.id for t in tracks)}")
        tracks = chosen
    flow = render_flow([t.points for t in tracks], height, width, visible=[t.visible for t in tracks])
    with atomic_output(output, make_parents=False) as tmp:
        np.save(tmp, flow)
    typer.echo(f"wrote {output}: flow {tuple(flow.shape)} float32, max |flow| {float(np.abs(flow).max()):.3f}")


@app.command("preview")
@handle_errors
def preview(
    track: Path = typer.Argument(..., help="A track file: .json, Tora .txt or .npy."),
    output: Path = typer.Option(..., "--output", "-o", help="preview.png (still), .gif or .mp4 (animated)."),
    background: Optional[Path] = typer.Option(None, "--background", "-b", help="An image to draw on (resized to the video)."),
    frames: Optional[int] = FRAMES,
    height: Optional[int] = HEIGHT,
    width: Optional[int] = WIDTH,
    clip: bool = CLIP,
    fps: float = FPS,
) -> None:
    """Draw the paths in per-entity colours with labels; animations add a moving marker."""
    from tora2.trajectory.preview import PREVIEW_SUFFIXES, save_preview

    if output.suffix.lower() not in PREVIEW_SUFFIXES:
        raise InputError(f"output {output}: use one of {', '.join(PREVIEW_SUFFIXES)}")
    tracks, frames, height, width = _load([track], frames, height, width, clip, fps)
    save_preview(tracks, output, height=height, width=width, background=background, fps=fps, progress=True)
    typer.echo(f"wrote {output}: {len(tracks)} entities, {frames} frames at {height}x{width} (HxW)")
