"""Per-entity inputs bundled in one object, so images, paths and texts cannot drift apart.

Coordinates are pixels of the output video, ``x`` right and ``y`` down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["auto", "human", "object"]
KINDS = ("auto", "human", "object")


@dataclass
class EntityTokens:
    """Frozen-encoder outputs for one entity, before the trainable adapters.

    semantic: (Ns, Cs) semantic-encoder tokens (CLIP/DINOv2 pooled + patch tokens).
    identity: (Ni, Ci) identity tokens: (1, face_dim) ArcFace embedding for humans,
              (Ni, object_dim) object-detail patch tokens otherwise.
    kind: "human" or "object" (resolved, never "auto").
    """

    semantic: Any  # torch.Tensor (Ns, Cs)
    identity: Any  # torch.Tensor (Ni, Ci)
    kind: str


@dataclass
class EntitySpec:
    """One entity as the pipeline consumes it (the model's input, after ``entities`` prepared and
    encoded the user's ``tora2.requests.EntityRequest``).

    text:       the entity phrase, ideally words that appear in the prompt ("a ginger cat").
    image:      reference appearance: a prepared crop (PIL image or (H, W, 3|4) uint8 array), RGBA
                alpha = the entity mask. ``None`` means no appearance reference.
    trajectory: (num_frames, 2) float pixel coordinates at the output size, or ``None``.
    visible:    (num_frames,) bool, False where the entity is absent; ``None`` = always visible.
    kind:       "human", "object" or "auto".
    face:       an aligned face crop (112×112 RGB uint8) for humans, when one was found.
    tokens:     precomputed EntityTokens (e.g. from the entity cache); skips the image encoders.
    """

    text: str
    image: Any = None
    trajectory: np.ndarray | None = None
    visible: np.ndarray | None = None
    kind: Kind = "auto"
    face: Any = None
    tokens: EntityTokens | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class EntitySample:
    """One entity of a training sample: a crop array and the path on the training clip's frames
    (datasets and the synthetic generator make these; training encodes them like an ``EntitySpec``)."""

    text: str
    kind: str
    reference: np.ndarray | None  # (h, w, 3|4) uint8 crop; None = no reference
    points: np.ndarray  # (F, 2) float32 pixels of the bucket
    visible: np.ndarray  # (F,) bool
