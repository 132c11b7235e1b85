"""``tora2 data prepare``: a folder of videos → a training clip manifest (docs/training.md).

Per video ``clip.mp4`` (the files beside it are the layout users provide):

* ``clip.txt`` — the caption (required; a clip without one is dropped).
* ``clip.entities.json`` — optional: which frame to segment and who is there::

      {"frame": 0, "entities": [{"id": "cat", "text": "a ginger cat", "kind": "object",
                                  "box": [x0, y0, x1, y1], "point": [x, y]}]}

  ``box``/``point`` (optional, pixels of that frame) prompt SAM or seed GrabCut. Without the file,
  the clip has one entity whose text is the caption, segmented unprompted on frame 0.
* ``clip.masks/<id>.png`` — optional: the mask of entity ``id`` on that frame (alpha channel if the
  PNG has one, else non-zero pixels). Without ``clip.entities.json`` every mask file is an entity
  (text = the file name with ``_`` → space).

Masks, in order: the user's mask file; else SAM (``SamPredictor`` prompted by box/point) when a SAM
checkpoint is given; else OpenCV GrabCut with a warning. The mask's frame is the reference frame:
the reference crop (RGBA, alpha = mask) is cut there and saved under ``references/`` next to the
manifest, and the training window is chosen away from it (``choose_window``), against copy-paste.
Tracks come from ``tora2.clips.prepare.track_mask`` (DIS optical flow, template re-locking).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from entities.crop import crop_entity
from entities.segment import (
    EntityWarning,
    check_box,
    check_point,
    load_sam,
    segment_with_grabcut,
    segment_with_sam,
)
from entities.sheet import save_image_atomic
from tora2.errors import InputError
from tora2.specs import KINDS
from tora2.clips.manifest import ClipRecord, EntityRecord, write_manifest
from tora2.clips.prepare import (
    ClipDropped,
    PrepareReport,
    choose_window,
    find_videos,
    load_frames,
    read_caption,
    track_mask,
)

LAYOUT_FIELDS = ("frame", "entities")
ENTITY_FIELDS = ("id", "text", "kind", "box", "point")
GRABCUT_WARNING = "no SAM checkpoint given: entity masks from OpenCV GrabCut (less accurate); pass --sam or provide clip.masks/<id>.png"


@dataclass
class EntityPrompt:
    id: str
    text: str
    kind: str = "auto"
    box: tuple | None = None
    point: tuple | None = None
    mask_file: Path | None = None


@dataclass
class EntityMask:
    id: str
    text: str
    kind: str
    mask: np.ndarray  # (H, W) bool on the layout's frame
    segmenter: str  # "user" | "sam" | "grabcut"


def masks_dir(video: Path) -> Path:
    return video.with_name(f"{video.stem}.masks")


def read_layout(video: Path, caption: str) -> tuple[int, list[EntityPrompt]]:
    """(frame, entity prompts) from ``clip.entities.json`` / ``clip.masks/``; bad files drop the clip."""
    layout_file = video.with_name(f"{video.stem}.entities.json")
    folder = masks_dir(video)
    mask_files = {p.stem: p for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}
    if not layout_file.is_file():
        if mask_files:
            return 0, [EntityPrompt(i, i.replace("_", " "), mask_file=p) for i, p in mask_files.items()]
        return 0, [EntityPrompt("entity", caption)]
    name = layout_file.name
    try:
        data = json.loads(layout_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ClipDropped(f"{name} is not valid JSON ({getattr(error, 'msg', error)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entities"), list) or not data["entities"]:
        raise ClipDropped(f"{name} must be an object with a non-empty 'entities' list")
    unknown = sorted(set(data) - set(LAYOUT_FIELDS))
    if unknown:
        raise ClipDropped(f"{name}: unknown field {unknown[0]!r}; allowed: {', '.join(LAYOUT_FIELDS)}")
    frame = data.get("frame", 0)
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        raise ClipDropped(f"{name}: frame must be an integer ≥ 0; got {frame!r}")
    prompts = []
    for i, entry in enumerate(data["entities"]):
        where = f"{name} entities[{i}]"
        if not isinstance(entry, dict):
            raise ClipDropped(f"{where} must be an object")
        unknown = sorted(set(entry) - set(ENTITY_FIELDS))
        if unknown:
            raise ClipDropped(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(ENTITY_FIELDS)}")
        entity_id = str(entry.get("id", f"entity{i}"))
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ClipDropped(f"{where}: text must be the entity's phrase (a non-empty string)")
        kind = entry.get("kind", "auto")
        if kind not in KINDS:
            raise ClipDropped(f"{where}: kind {kind!r}; use one of {', '.join(KINDS)}")
        prompts.append(EntityPrompt(entity_id, text.strip(), kind, entry.get("box"), entry.get("point"), mask_files.get(entity_id)))
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise ClipDropped(f"{name}: entity ids repeat ({', '.join(ids)}); give each a unique id")
    return frame, prompts


def read_mask_file(path: Path, height: int, width: int) -> np.ndarray:
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:
        raise ClipDropped(f"unreadable mask {path.name} ({type(error).__name__})") from None
    array = np.asarray(image.convert("RGBA"))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    mask = array[..., 3] >= 128 if has_alpha else array[..., :3].max(-1) >= 128
    if mask.shape != (height, width):
        raise ClipDropped(f"mask {path.name} is {mask.shape[1]}x{mask.shape[0]}; the video is {width}x{height}")
    return mask


def find_entity_masks(rgb: np.ndarray, prompts: list[EntityPrompt], sam=None) -> list[EntityMask]:
    """The mask of each prompted entity on one frame (user mask file, else SAM, else GrabCut)."""
    height, width = rgb.shape[:2]
    out = []
    for prompt in prompts:
        try:
            box = check_box(prompt.box, width, height) if prompt.box is not None else None
            point = check_point(prompt.point, width, height) if prompt.point is not None else None
        except InputError as error:
            raise ClipDropped(f"entity {prompt.id!r}: {error}") from None
        if prompt.mask_file is not None:
            mask, segmenter = read_mask_file(prompt.mask_file, height, width), "user"
        elif sam is not None:
            mask, segmenter = segment_with_sam(rgb, sam, box=box, point=point), "sam"
        else:
            mask, segmenter = segment_with_grabcut(rgb, box=box, point=point), "grabcut"
        if not mask.any():
            raise ClipDropped(f"no entity found ({segmenter} mask of {prompt.id!r} is empty)")
        out.append(EntityMask(prompt.id, prompt.text, prompt.kind, mask, segmenter))
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def prepare_clip(video: Path, clip_id: str, output_dir: Path, num_frames: int, sam=None) -> tuple[ClipRecord, list[str]]:
    """One video → a ClipRecord (references and masks written under ``output_dir``); raises ClipDropped."""
    caption = read_caption(video)
    frame, prompts = read_layout(video, caption)
    frames = load_frames(video)  # (F, H, W, 3)
    total = len(frames)
    if frame >= total:
        raise ClipDropped(f"entities frame {frame} is past the video's {total} frames")
    start = choose_window(total, num_frames, frame)
    masks = find_entity_masks(frames[frame], prompts, sam)
    notes = [GRABCUT_WARNING] if any(m.segmenter == "grabcut" for m in masks) else []
    window = slice(start, start + num_frames)
    tracked = []
    for entity in masks:
        points, visible = track_mask(frames, entity.mask, frame)  # (F, 2), (F,)
        if visible[window].any():  # gone for the whole training window: nothing to learn from it
            tracked.append((entity, points, visible))
    if not tracked:
        raise ClipDropped("no entity visible in the training window")
    entities = []
    for entity, points, visible in tracked:
        stem = f"{_safe(clip_id)}_{_safe(entity.id)}"
        crop, _ = crop_entity(frames[frame], entity.mask)
        reference = save_image_atomic(crop, output_dir / "references" / f"{stem}.png")
        mask_image = Image.fromarray(entity.mask.astype(np.uint8) * 255)
        mask_path = save_image_atomic(mask_image, output_dir / "masks" / f"{stem}_f{frame:04d}.png")
        entities.append(EntityRecord(entity.id, entity.text, entity.kind, [reference], points, visible, [mask_path]))
    meta = {"reference_frame": frame, "segmenter": sorted({m.segmenter for m in masks}), "frames": total}
    return ClipRecord(video=video.resolve(), caption=caption, entities=entities, start_frame=start, id=clip_id, meta=meta), notes


def prepare_dataset(
    video_dir: str | Path,
    output: str | Path,
    num_frames: int = 49,
    sam_checkpoint: str | Path | None = None,
    sam_model_type: str = "vit_b",
    progress: bool = False,
) -> PrepareReport:
    """Every video of ``video_dir`` → ``output`` (a JSONL manifest) plus references/ and masks/ beside it.

    Clips that cannot be used are skipped with a reason (``report.dropped``); the manifest holds the
    kept ones. Raises InputError when the folder is missing or has no videos, or none is usable.
    """
    if num_frames < 2:
        raise InputError(f"num_frames {num_frames} must be ≥ 2 (training uses 4k + 1, e.g. 9 or 49)")
    output = Path(output)
    if output.suffix != ".jsonl":
        raise InputError(f"output {output} must end in .jsonl (a JSON-lines clip manifest)")
    videos = find_videos(video_dir)
    sam = load_sam(sam_checkpoint, sam_model_type) if sam_checkpoint is not None else None
    report = PrepareReport(manifest=output)
    clips: list[ClipRecord] = []
    stems = [v.stem for v in videos]
    iterator = videos
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(videos, desc="prepare", unit="clip")
    for video in iterator:
        clip_id = video.stem if stems.count(video.stem) == 1 else video.name
        try:
            clip, notes = prepare_clip(video, clip_id, output.parent, num_frames, sam)
        except ClipDropped as dropped:
            report.dropped.append((video.name, dropped.reason))
            continue
        clips.append(clip)
        report.kept.append((clip.id, len(clip.entities), clip.start_frame))
        for note in notes:
            if note not in report.warnings:
                report.warnings.append(note)
                warnings.warn(note, EntityWarning, stacklevel=2)
    if not clips:
        reasons = "; ".join(f"{v}: {r}" for v, r in report.dropped[:3])
        raise InputError(f"no usable clip in {video_dir} ({reasons}); see docs/training.md for the layout")
    write_manifest(clips, output)
    return report
