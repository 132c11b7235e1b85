"""On-disk cache of frozen-encoder outputs, so batch jobs and repeated runs never recompute them.

Key = sha256 of (the exact uint8 pixels fed to the encoder, their shape, the encoder's
``encoder_id`` — which hashes its config and weights — and the settings such as the role and
size). Any change to one of them is a different key, i.e. a miss; stale entries are never read.

Layout: ``<root>/<key[:2]>/<key>.safetensors`` holding one tensor ``tokens``. Writers save to a
unique temporary file in the same folder and ``os.replace`` it into place, so concurrent writers of
the same key are safe (last rename wins, every version is complete) and readers never see a
partial file. Default root: ``$TORA2_CACHE`` or ``~/.cache/tora2/entities``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tora2.io import atomic_output


def default_cache_root() -> Path:
    return Path(os.environ.get("TORA2_CACHE", "~/.cache/tora2/entities")).expanduser()


def image_hash(image: np.ndarray) -> str:
    """Content hash of a uint8 array (shape included, so a reshaped buffer is a different image)."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{image.dtype}:{image.shape}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class EntityCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.hits = 0
        self.misses = 0

    def key(self, image: np.ndarray, encoder_id: str, settings: dict | None = None) -> str:
        payload = json.dumps({"image": image_hash(image), "encoder": encoder_id, "settings": settings or {}}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        try:
            return load_file(str(path))["tokens"]
        except FileNotFoundError:
            return None
        except (SafetensorError, OSError, KeyError):
            return None  # damaged entry (disk full, killed writer on a non-atomic FS): recompute

    def put(self, key: str, tokens: torch.Tensor) -> None:
        with atomic_output(self.path(key), suffix=".tmp") as tmp:
            save_file({"tokens": tokens.detach().to("cpu").contiguous()}, str(tmp))

    def get_or_compute(
        self, image: np.ndarray, encoder_id: str, settings: dict | None, compute: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        key = self.key(image, encoder_id, settings)
        cached = self.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        tokens = compute()
        self.put(key, tokens)
        return tokens

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.safetensors")) if self.root.is_dir() else 0
