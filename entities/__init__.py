"""Entities: photo → segmented, cropped, kind-routed entity → frozen-encoder tokens.

Imports go one way: ``cli → entities → tora2``.
"""

import tora2  # noqa: F401  (torchvision shim before segment_anything / open_clip are imported)
from entities.cache import EntityCache
from entities.encode import encode_entity
from entities.prepare import PreparedEntity, load_prepared, prepare_entity

__all__ = ["EntityCache", "PreparedEntity", "encode_entity", "load_prepared", "prepare_entity"]
