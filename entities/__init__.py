"""Entities: photo → segmented, cropped, kind-routed entity → frozen-encoder tokens → ``EntitySpec``.

Imports go one way: ``cli → entities → tora2``. Names load on first use, so that reading an image or
a request does not import torch.
"""

import importlib

import tora2  # noqa: F401  (torchvision shim before segment_anything / open_clip are imported)

_HOMES = {
    "EntityCache": "entities.cache",
    "encode_entity": "entities.encode",
    "PreparedEntity": "entities.prepare",
    "load_prepared": "entities.prepare",
    "prepare_entity": "entities.prepare",
    "EntityResolver": "entities.generation",
    "GenerationBackend": "entities.generation",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'entities' has no attribute {name!r}")


__all__ = sorted(_HOMES)
