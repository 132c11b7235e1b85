"""Prepared entity → EntityTokens: the frozen encoders' outputs the DPE adapters consume.

Token counts (S = semantic encoder input size, P its patch size, G = S // P, Cs its out_dim):

* semantic: ``(1 + G*G, Cs)`` — pooled token then patch tokens of the white-backed square crop at
  S px. ViT-L-14 @ 224: (257, 768); dinov2-large @ 224: (257, 1024); the tiny test encoder: (17, 16).
* identity, human with a face encoder: ``(1, 512)`` L2-normalised ArcFace embedding of the
  aligned 112×112 face.
* identity, otherwise (object detail): ``(DETAIL_GRID**2, Cs) = (16, Cs)``. The crop is resized to
  ``detail_size`` (default 2·S; must be a multiple k·S), cut into k×k tiles of S px, each tile
  encoded at the encoder's native size (no position-embedding interpolation needed), the tiles'
  patch grids stitched into one (k·G)×(k·G) grid and average-pooled to 4×4.

A ``human`` entity encoded without a face encoder gets object-detail tokens and kind ``object``
(with a warning), so the kind always says which adapter the identity tokens fit.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from entities.cache import EntityCache
from entities.faces import route_kind
from entities.prepare import PreparedEntity
from entities.segment import EntityWarning
from tora2.errors import InputError
from tora2.models.encoders import DETAIL_GRID, white_square
from tora2.specs import EntitySpec, EntityTokens



def _cached(cache: EntityCache | None, image: np.ndarray, encoder_id: str, settings: dict, compute) -> torch.Tensor:
    if cache is None:
        return compute()
    return cache.get_or_compute(image, encoder_id, settings, compute)


def semantic_tokens(square: np.ndarray, encoder, cache: EntityCache | None = None) -> torch.Tensor:
    """(S', S', 3) uint8 white-backed square → (1 + G*G, Cs)."""
    def compute():
        return encoder.semantic_tokens(square)

    return _cached(cache, square, encoder.encoder_id, {"role": "semantic"}, compute)


def detail_tokens(square: np.ndarray, encoder, detail_size: int | None = None, cache: EntityCache | None = None) -> torch.Tensor:
    """(S', S', 3) uint8 → (DETAIL_GRID², Cs) object-detail tokens from k×k native-size tiles."""
    detail_size = 2 * encoder.image_size if detail_size is None else int(detail_size)

    def compute():
        return encoder.detail_tokens(square, detail_size)

    return _cached(cache, square, encoder.encoder_id, {"role": "detail", "detail_size": detail_size, "grid": DETAIL_GRID}, compute)


def face_tokens(face: np.ndarray, face_encoder, cache: EntityCache | None = None) -> torch.Tensor:
    """(112, 112, 3) uint8 aligned face → (1, 512)."""
    def compute():
        return face_encoder.encode(face_encoder.preprocess([face]))[0]

    return _cached(cache, face, face_encoder.encoder_id, {"role": "face"}, compute)


def encode_entity(
    prepared_or_spec: PreparedEntity | EntitySpec,
    semantic_encoder,
    face_encoder=None,
    detail_size: int | None = None,
    cache: EntityCache | None = None,
) -> EntityTokens:
    """Frozen-encoder tokens of one entity (see the module docstring for shapes)."""
    item = prepared_or_spec
    if isinstance(item, PreparedEntity):
        image, kind, face = item.crop, item.kind, item.face
    elif isinstance(item, EntitySpec):
        if item.tokens is not None:
            return item.tokens
        if item.image is None:
            raise InputError(f"entity {item.text!r} has no image to encode; give it a reference image or precomputed tokens")
        image, kind, face = item.image, item.kind, item.face
    else:
        raise InputError(f"encode_entity takes a PreparedEntity or EntitySpec; got {type(item).__name__}")
    square = white_square(image)  # (S', S', 3)
    if kind != "object" and face is None:
        # A spec built by hand: look for the face in the entity image itself.
        h, w = square.shape[:2]
        kind, face, _ = route_kind(square, (0, 0, w, h), kind, source=getattr(item, "text", "entity"))
    semantic = semantic_tokens(square, semantic_encoder, cache)
    if kind == "human" and face_encoder is not None:
        return EntityTokens(semantic=semantic, identity=face_tokens(np.asarray(face), face_encoder, cache), kind="human")
    if kind == "human":
        warnings.warn(
            "human entity encoded with object-detail tokens: no face encoder configured; pass an ArcFace model for face identity",
            EntityWarning, stacklevel=2,
        )
    return EntityTokens(semantic=semantic, identity=detail_tokens(square, semantic_encoder, detail_size, cache), kind="object")


def sample_entity_encoder(components: dict, detail_size: int | None = None):
    """A training sample's reference crop → EntityTokens with :func:`encode_entity` (what
    ``tora2 generate`` uses), for ``train(entity_encoder=...)``."""
    semantic, face = components.get("image_encoder"), components.get("face_encoder")
    if semantic is None:
        raise InputError("the model has no image_encoder to encode entity references; use a model config with an image_encoder section")

    def encode(entity) -> EntityTokens:
        kind = entity.kind if entity.kind in ("human", "object") else "object"
        return encode_entity(EntitySpec(text=entity.text, image=entity.reference, kind=kind), semantic, face, detail_size)

    return encode
