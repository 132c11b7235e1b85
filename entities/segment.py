"""Entity masks: the alpha channel, else SAM prompted by a box or point, else OpenCV GrabCut.

Order of preference (the first that applies is used; ``meta["segmenter"]`` records which):
1. ``alpha``: the image has an alpha channel that is not fully opaque → mask = alpha ≥ 128
   (restricted to the box when one is given).
2. ``sam``: a SAM checkpoint is configured → ``SamPredictor`` with the box, or the point, or, with
   neither, the largest plausible mask (2–90 % of the image) among a 3×3 grid of point prompts.
   (``SamAutomaticMaskGenerator`` is not used: it calls torchvision's nms.)
3. ``grabcut``: no checkpoint → OpenCV GrabCut seeded by the box, the point, or a centred box
   (10 % margin), with a warning saying so.

SAM checkpoints load by model type (vit_b/vit_l/vit_h, the official sizes) or, when a sidecar
``<checkpoint>.json`` exists beside the file, by the architecture written there (see
``SamArchitecture``) — that is how tiny test models load through the same code as real ones.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
import torch

from tora2.errors import InputError

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
# Fraction of the image a mask must cover to count as a plausible object when SAM is unprompted.
PLAUSIBLE_AREA = (0.02, 0.90)
GRABCUT_MAX_SIDE = 512  # GrabCut is O(pixels · iterations); segment a downscaled copy
GRABCUT_ITERATIONS = 5


class EntityWarning(UserWarning):
    """A designed fallback was used (e.g. GrabCut instead of SAM)."""


@dataclass
class Segmentation:
    mask: np.ndarray  # (H, W) bool
    segmenter: str  # "alpha" | "sam" | "grabcut"
    warnings: list[str] = field(default_factory=list)


def parse_numbers(value: str, count: int, name: str) -> tuple[float, ...]:
    """``"x0,y0,x1,y1"`` (count 4, a box) or ``"x,y"`` (count 2, a point) typed by a user → numbers."""
    parts = [p.strip() for p in str(value).split(",")]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != count:
        example = "x0,y0,x1,y1" if count == 4 else "x,y"
        raise InputError(f"{name} {value!r} must be {count} comma-separated numbers, e.g. {name} {example}")
    return numbers


def check_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Validate (x0, y0, x1, y1) pixel box (x1, y1 exclusive) against a width×height image."""
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"box {box!r} must be four numbers x0,y0,x1,y1") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(
            f"box {x0},{y0},{x1},{y1} is empty or outside the {width}x{height} image; "
            f"use 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}"
        )
    return x0, y0, x1, y1


def check_point(point, width: int, height: int) -> tuple[int, int]:
    try:
        x, y = (int(round(float(v))) for v in point)
    except (TypeError, ValueError):
        raise InputError(f"point {point!r} must be two numbers x,y") from None
    if not (0 <= x < width and 0 <= y < height):
        raise InputError(f"point {x},{y} is outside the {width}x{height} image; use 0 <= x < {width}, 0 <= y < {height}")
    return x, y


# ----------------------------------------------------------------------------------------------
# SAM
# ----------------------------------------------------------------------------------------------
@dataclass
class SamArchitecture:
    """Every size segment_anything's ``build_sam`` fixes, so a small SAM can be described in JSON."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: list[int]
    image_size: int = 1024
    vit_patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256

    @classmethod
    def from_json(cls, path: Path) -> "SamArchitecture":
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read SAM architecture sidecar {path} ({error}); fix or delete it") from None
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InputError(f"{path}: unknown SAM architecture keys {unknown}; allowed: {sorted(allowed)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise InputError(f"{path}: {error}; the file needs encoder_embed_dim, encoder_depth, encoder_num_heads, encoder_global_attn_indexes") from None


SAM_PRESETS = {  # the official checkpoints' sizes (segment_anything/build_sam.py)
    "vit_b": SamArchitecture(768, 12, 12, [2, 5, 8, 11]),
    "vit_l": SamArchitecture(1024, 24, 16, [5, 11, 17, 23]),
    "vit_h": SamArchitecture(1280, 32, 16, [7, 15, 23, 31]),
}


def build_sam(arch: SamArchitecture):
    """A randomly initialised ``segment_anything.modeling.Sam`` of the given sizes."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.image_size // arch.vit_patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=4,
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=arch.vit_patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def sam_sidecar(checkpoint: Path) -> Path:
    """``model.pth`` → ``model.json``: the optional architecture file beside a checkpoint."""
    return checkpoint.with_suffix(".json")


@functools.lru_cache(maxsize=2)
def _load_sam_cached(path: str, mtime_ns: int, model_type: str):
    checkpoint = Path(path)
    sidecar = sam_sidecar(checkpoint)
    if sidecar.is_file():
        arch, described = SamArchitecture.from_json(sidecar), f"the architecture in {sidecar.name}"
    else:
        if model_type not in SAM_PRESETS:
            raise InputError(f"unknown SAM model type {model_type!r}; use one of {', '.join(SAM_MODEL_TYPES)}")
        arch, described = SAM_PRESETS[model_type], f"SAM {model_type}"
    sam = build_sam(arch)
    try:
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors come in many types
        raise InputError(f"cannot read SAM checkpoint {checkpoint} ({type(error).__name__}); pass a segment_anything .pth file") from None
    if not isinstance(state_dict, dict):
        raise InputError(f"SAM checkpoint {checkpoint} holds a {type(state_dict).__name__}, not a state dict")
    try:
        sam.load_state_dict(state_dict)
    except RuntimeError:
        raise InputError(
            f"SAM checkpoint {checkpoint} does not match {described}; pass the right --sam-type "
            f"({', '.join(SAM_MODEL_TYPES)}) or put the architecture in {sidecar.name}"
        ) from None
    sam.requires_grad_(False)
    return sam


def load_sam(checkpoint, model_type: str = "vit_b"):
    """Load a SAM checkpoint (cached per path and modification time)."""
    checkpoint = Path(checkpoint).expanduser()
    if not checkpoint.is_file():
        raise InputError(f"SAM checkpoint {checkpoint} not found; pass the path of a local sam_vit_*.pth file")
    return _load_sam_cached(str(checkpoint.resolve()), checkpoint.stat().st_mtime_ns, model_type)


def segment_with_sam(rgb: np.ndarray, sam, box=None, point=None) -> np.ndarray:
    """(H, W, 3) uint8 → (H, W) bool mask from SamPredictor."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    with torch.no_grad():
        predictor.set_image(rgb)
        if box is not None:
            masks, scores, _ = predictor.predict(box=np.asarray(box, dtype=np.float32), multimask_output=False)
            return masks[0].astype(bool)
        if point is not None:
            masks, scores, _ = predictor.predict(
                point_coords=np.asarray([point], dtype=np.float32), point_labels=np.array([1]), multimask_output=True
            )
            return masks[int(np.argmax(scores))].astype(bool)
        # No prompt: the largest plausible object among a 3×3 grid of single-point prompts.
        h, w = rgb.shape[:2]
        candidates = []
        for fy in (0.25, 0.5, 0.75):
            for fx in (0.25, 0.5, 0.75):
                masks, scores, _ = predictor.predict(
                    point_coords=np.array([[fx * w, fy * h]], dtype=np.float32), point_labels=np.array([1]), multimask_output=True
                )
                candidates.extend((m.astype(bool), float(s)) for m, s in zip(masks, scores))
    lo, hi = PLAUSIBLE_AREA
    plausible = [m for m, _ in candidates if lo <= m.mean() <= hi]
    if plausible:
        return max(plausible, key=lambda m: int(m.sum()))
    return max(candidates, key=lambda c: c[1])[0]  # nothing plausible: SAM's most confident mask


# ----------------------------------------------------------------------------------------------
# GrabCut
# ----------------------------------------------------------------------------------------------
def segment_with_grabcut(rgb: np.ndarray, box=None, point=None) -> np.ndarray:
    """Classical fallback: OpenCV GrabCut on a ≤512 px copy, seeded by box, point or a centred box."""
    h, w = rgb.shape[:2]
    scale = min(1.0, GRABCUT_MAX_SIDE / max(h, w))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    bgr = np.ascontiguousarray(small[..., ::-1])
    seed = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    bgd_model, fgd_model = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    if point is not None:
        # Likely foreground around the point, sure foreground at it, sure background at the border.
        px, py = int(point[0] * scale), int(point[1] * scale)
        radius = max(2, min(sw, sh) // 4)
        cv2.circle(seed, (px, py), radius, cv2.GC_PR_FGD, -1)
        cv2.circle(seed, (px, py), max(1, radius // 4), cv2.GC_FGD, -1)
        seed[0, :] = seed[-1, :] = cv2.GC_BGD
        seed[:, 0] = seed[:, -1] = cv2.GC_BGD
        seed[py, px] = cv2.GC_FGD
        mode, rect = cv2.GC_INIT_WITH_MASK, None
    else:
        if box is None:
            box = (0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h)
        x0, y0 = int(box[0] * scale), int(box[1] * scale)
        x1, y1 = max(x0 + 1, int(round(box[2] * scale))), max(y0 + 1, int(round(box[3] * scale)))
        mode, rect = cv2.GC_INIT_WITH_RECT, (x0, y0, x1 - x0, y1 - y0)
    try:
        cv2.grabCut(bgr, seed, rect, bgd_model, fgd_model, GRABCUT_ITERATIONS, mode)
    except cv2.error:
        # GrabCut cannot model a region with a single colour; an empty mask is reported below.
        return np.zeros((h, w), bool)
    small_mask = ((seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1.0:
        small_mask = cv2.resize(small_mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return small_mask.astype(bool)


# ----------------------------------------------------------------------------------------------
def segment_entity(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    box=None,
    point=None,
    sam_checkpoint=None,
    sam_model_type: str = "vit_b",
    source: str = "image",
) -> Segmentation:
    """The entity mask of an image. ``box``/``point`` must already be validated pixels."""
    h, w = rgb.shape[:2]
    notes: list[str] = []
    if alpha is not None and (alpha < 255).any():
        mask, segmenter = alpha >= 128, "alpha"
        if box is not None:
            inside = np.zeros_like(mask)
            inside[box[1] : box[3], box[0] : box[2]] = True
            mask &= inside
    elif sam_checkpoint is not None:
        mask, segmenter = segment_with_sam(rgb, load_sam(sam_checkpoint, sam_model_type), box=box, point=point), "sam"
    else:
        mask, segmenter = segment_with_grabcut(rgb, box=box, point=point), "grabcut"
        message = "no SAM checkpoint configured: segmented with OpenCV GrabCut (less accurate); pass a SAM checkpoint (--sam) for SAM"
        warnings.warn(message, EntityWarning, stacklevel=3)
        notes.append(message)
    if not mask.any():
        hint = {
            "alpha": "the alpha channel is fully transparent there; fix the alpha or pass a box over the entity",
            "sam": "try a box (--box) or a point (--point) on the entity",
            "grabcut": "pass a tighter box (--box) or a SAM checkpoint (--sam)",
        }[segmenter]
        raise InputError(f"{source}: the {segmenter} mask is empty; {hint}")
    return Segmentation(mask=mask, segmenter=segmenter, warnings=notes)
