"""Photo → PreparedEntity: segment, crop onto white, route the kind, align the face.

A prepared entity directory holds::

    crop.png     square RGBA crop: RGB = entity on white, alpha = mask
    mask.png     (H, W) mask in the original photo, 0/255
    face.png     112×112 aligned face (humans only)
    entity.json  text, kind, source, box, segmenter, detector, warnings, sizes
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from entities.crop import crop_entity
from entities.faces import route_kind
from entities.images import load_image
from entities.segment import check_box, check_point, segment_entity
from tora2.errors import InputError
from tora2.specs import EntitySpec

FORMAT_VERSION = 1
FILES = ("crop.png", "mask.png", "face.png", "entity.json")


@dataclass
class PreparedEntity:
    """A reference photo segmented and cropped, with its resolved kind: the step between a request's
    image and its encoder tokens (saved as an entity directory by ``tora2 entity prepare``)."""

    text: str
    kind: str  # "human" | "object"
    crop: Image.Image  # square RGBA, RGB on white, alpha = mask
    mask: np.ndarray  # (H, W) bool in the original image
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the mask, exclusive ends
    face: np.ndarray | None = None  # (112, 112, 3) uint8
    meta: dict = field(default_factory=dict)  # source, segmenter, detector, warnings

    def to_spec(self, trajectory=None, visible=None) -> EntitySpec:
        return EntitySpec(
            text=self.text, image=self.crop, trajectory=trajectory, visible=visible,
            kind=self.kind, face=self.face, meta=dict(self.meta),
        )

    def save(self, directory) -> Path:
        """Write the entity directory atomically: a temporary sibling, then a rename."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InputError(f"output {directory} exists and is a file; pass a directory path with -o")
        if directory.is_dir() and any(directory.iterdir()) and not (directory / "entity.json").is_file():
            raise InputError(f"output directory {directory} is not empty and not an entity directory; choose another -o")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
        try:
            self.crop.save(tmp / "crop.png")
            Image.fromarray(self.mask.astype(np.uint8) * 255, "L").save(tmp / "mask.png")
            if self.face is not None:
                Image.fromarray(self.face, "RGB").save(tmp / "face.png")
            record = {
                "format_version": FORMAT_VERSION, "text": self.text, "kind": self.kind, "box": list(self.box),
                "image_size": [int(self.mask.shape[1]), int(self.mask.shape[0])], "crop_size": self.crop.size[0],
                "face": self.face is not None, **self.meta,
            }
            (tmp / "entity.json").write_text(json.dumps(record, indent=2) + "\n")
            if directory.exists():  # replace an earlier entity directory: swap, then delete the old one
                old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
                os.replace(directory, old / "entity")
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory


def prepare_entity(
    image,
    text: str,
    *,
    box=None,
    point=None,
    kind: str = "auto",
    sam_checkpoint=None,
    sam_model_type: str = "vit_b",
) -> PreparedEntity:
    """Segment ``image`` (path, PIL image or array), crop the entity and resolve its kind.

    box: (x0, y0, x1, y1) pixels, x1/y1 exclusive; point: (x, y). At most one of the two.
    Fallback warnings (GrabCut instead of SAM) are issued with ``warnings.warn`` and kept in
    ``meta["warnings"]``.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("entity text is empty; pass a short phrase such as 'a ginger cat'")
    if box is not None and point is not None:
        raise InputError("pass either a box or a point, not both")
    if kind not in ("auto", "human", "object"):
        raise InputError(f"kind {kind!r} is not one of auto, human, object")
    loaded = load_image(image)
    h, w = loaded.rgb.shape[:2]
    box = check_box(box, w, h) if box is not None else None
    point = check_point(point, w, h) if point is not None else None
    segmentation = segment_entity(
        loaded.rgb, loaded.alpha, box=box, point=point, sam_checkpoint=sam_checkpoint,
        sam_model_type=sam_model_type, source=loaded.source,
    )
    crop, mask_box = crop_entity(loaded.rgb, segmentation.mask)
    resolved, face, detector = route_kind(loaded.rgb, mask_box, kind, source=loaded.source)
    meta = {
        "source": loaded.source, "segmenter": segmentation.segmenter, "detector": detector,
        "warnings": list(segmentation.warnings),
    }
    return PreparedEntity(text=text.strip(), kind=resolved, crop=crop, mask=segmentation.mask, box=mask_box, face=face, meta=meta)


def load_prepared(directory) -> PreparedEntity:
    """Read a directory written by ``PreparedEntity.save``."""
    directory = Path(directory)
    record_path = directory / "entity.json"
    if not record_path.is_file():
        raise InputError(f"{directory} is not an entity directory (no entity.json); create one with `tora2 entity prepare`")
    try:
        record = json.loads(record_path.read_text())
        with Image.open(directory / "crop.png") as crop:
            crop = crop.convert("RGBA")
        with Image.open(directory / "mask.png") as mask_image:
            mask = np.asarray(mask_image.convert("L")) >= 128
        face = None
        if record.get("face"):
            with Image.open(directory / "face.png") as face_image:
                face = np.asarray(face_image.convert("RGB"))
        meta = {k: record[k] for k in ("source", "segmenter", "detector", "warnings") if k in record}
        return PreparedEntity(
            text=record["text"], kind=record["kind"], crop=crop, mask=mask,
            box=tuple(int(v) for v in record["box"]), face=face, meta=meta,
        )
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise InputError(f"entity directory {directory} is damaged ({type(error).__name__}: {error}); prepare it again") from None


__all__ = ["PreparedEntity", "prepare_entity", "load_prepared"]
