"""Frozen encoders, run once per clip: VAE latents, text embeddings, flow latents, entity tokens.

The conditioning is computed by ``tora2.pipelines.conditioning`` — the same functions the pipeline
uses — so training and inference condition identically. Only the trainable parts (the
PersonalizationExtractor and the transformer) run in the training step.

An encoded sample is a flat dict of tensors (saved as one safetensors file per clip in the cache):

    latents (Fl, C, h, w)   prompt_embeds (L, D)   flow (Fl, C, h, w)   null_flow (Fl, C, h, w)
    positions (E, Fl, 2)    visible (E, Fl)        text (E, Lc, D)      text_mask (E, Lc)
    semantic (E, Ns, Cs)    object (E, Ni, Co)     face (E, 1, Cf)      is_human (E,)   has_reference (E,)

``Lc`` is ``max_phrase_tokens``; entity tensors have E = 0 rows for a clip without entities.

Entity reference crops are turned into ``EntityTokens`` by an ``entity_encoder`` callable (the
``entities`` package provides one; ``tora2`` does not import it): ``entity_encoder(sample) -> EntityTokens``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tora2.errors import InputError
from tora2.io import atomic_output
from tora2.pipelines.components import vae_compression
from tora2.pipelines.conditioning import (
    DEFAULT_MAX_PHRASE_TOKENS,
    encode_prompt,
    encode_video,
    flow_latents,
    null_flow_latents,
    num_latent_frames,
    phrase_token_embeds,
)
from tora2.specs import EntityTokens
from tora2.trajectory import latent_positions

EntityEncoder = Callable[[object], EntityTokens]


def _fingerprint(module) -> str:
    """A short hash of a frozen module's weights: cached encodings are invalid when it changes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
        digest.update(str(tuple(tensor.shape)).encode())
    return digest.hexdigest()[:16]


class SampleEncoder:
    """Encodes dataset samples with the frozen components; memoised in memory and, optionally, on disk."""

    def __init__(
        self,
        components: dict,
        entity_encoder: EntityEncoder | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_phrase_tokens: int = DEFAULT_MAX_PHRASE_TOKENS,
        keep_in_memory: bool = True,
    ):
        self.tokenizer = components["tokenizer"]
        self.text_encoder = components["text_encoder"]
        self.vae = components["vae"]
        transformer = components["transformer"]
        self.max_sequence_length = int(transformer.config.max_text_seq_length)
        personalization = components.get("personalization")
        self.semantic_dim = personalization.config.semantic_dim if personalization is not None else 1
        self.object_dim = personalization.config.object_dim if personalization is not None else 1
        self.face_dim = personalization.config.face_dim if personalization is not None else 1
        if entity_encoder is None and components.get("image_encoder") is not None:
            entity_encoder = pipeline_entity_encoder(components)
        self.entity_encoder = entity_encoder
        self.max_phrase_tokens = max_phrase_tokens
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.keep_in_memory = keep_in_memory
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self._null_prompt: torch.Tensor | None = None
        self._null_flow: dict[tuple, torch.Tensor] = {}
        self.encoder_id = hashlib.sha256(
            f"{_fingerprint(self.vae)}:{_fingerprint(self.text_encoder)}:{self.max_sequence_length}:{max_phrase_tokens}".encode()
        ).hexdigest()[:16]

    # ----------------------------------------------------------------------------- shared
    def null_prompt(self) -> torch.Tensor:
        """(L, D) embedding of the empty prompt (dropped caption)."""
        if self._null_prompt is None:
            self._null_prompt = encode_prompt(self.tokenizer, self.text_encoder, [""], self.max_sequence_length)[0][0]
        return self._null_prompt

    def null_flow(self, num_frames: int, height: int, width: int) -> torch.Tensor:
        key = (num_frames, height, width)
        if key not in self._null_flow:
            self._null_flow[key] = null_flow_latents(self.vae, num_frames, height, width)[0]
        return self._null_flow[key]

    # ----------------------------------------------------------------------------- per sample
    def cache_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        return self.cache_dir / self.encoder_id / f"{safe}-{digest}.safetensors"

    def lookup(self, dataset, index: int) -> dict[str, torch.Tensor]:
        """``dataset[index]`` encoded; skips decoding when the dataset names its keys (``key_of``) and they are cached."""
        key_of = getattr(dataset, "key_of", None)
        if key_of is not None:
            key = str(key_of(index))
            path = self.cache_path(key)
            if key in self._memory or (path is not None and path.is_file()):
                return self(None, key)
        return self(dataset[index])

    def __call__(self, sample: dict | None, key: str | None = None) -> dict[str, torch.Tensor]:
        key = str(sample["key"]) if sample is not None else key
        if key in self._memory:
            return self._memory[key]
        path = self.cache_path(key)
        if path is not None and path.is_file():
            encoded = load_file(str(path))
        else:
            encoded = self.encode(sample)
            if path is not None:
                with atomic_output(path, suffix=".tmp") as tmp:
                    save_file({k: v.contiguous() for k, v in encoded.items()}, str(tmp), metadata={"key": json.dumps(key)})
        if self.keep_in_memory:
            self._memory[key] = encoded
        return encoded

    @torch.no_grad()
    def encode(self, sample: dict) -> dict[str, torch.Tensor]:
        video = sample["video"]  # (F, 3, H, W)
        if video.ndim != 4 or video.shape[1] != 3:
            raise InputError(f"sample {sample['key']!r}: video must be (F, 3, H, W) in [-1, 1]; got {tuple(video.shape)}")
        num_frames, _, height, width = video.shape
        latents = encode_video(self.vae, video[None])[0]  # (Fl, C, h, w)
        caption = sample["caption"]
        prompt_embeds = encode_prompt(self.tokenizer, self.text_encoder, [caption], self.max_sequence_length)[0][0]  # (L, D)
        entities = list(sample.get("entities", []))
        frames_latent = num_latent_frames(self.vae, num_frames)
        temporal, _ = vae_compression(self.vae)
        count = len(entities)
        positions = torch.full((count, frames_latent, 2), 0.5)
        visible = torch.zeros(count, frames_latent, dtype=torch.bool)
        text = torch.zeros(count, self.max_phrase_tokens, prompt_embeds.shape[-1])
        text_mask = torch.zeros(count, self.max_phrase_tokens, dtype=torch.bool)
        has_reference = torch.zeros(count, dtype=torch.bool)
        is_human = torch.zeros(count, dtype=torch.bool)
        semantic, objects, faces = [], [], []
        paths, masks = [], []
        for i, entity in enumerate(entities):
            points = np.asarray(entity.points, dtype=np.float64)
            vis = np.asarray(entity.visible, dtype=bool)
            if points.shape != (num_frames, 2) or vis.shape != (num_frames,):
                raise InputError(
                    f"sample {sample['key']!r} entity {i}: points {points.shape} / visible {vis.shape} must be "
                    f"({num_frames}, 2) / ({num_frames},), one per frame"
                )
            paths.append(points)
            masks.append(vis)
            pos, vis_latent = latent_positions(points, vis, frames_latent, temporal, height=height, width=width)
            positions[i], visible[i] = torch.from_numpy(pos), torch.from_numpy(vis_latent)
            text[i], text_mask[i] = phrase_token_embeds(
                self.tokenizer, prompt_embeds, caption, entity.text, self.max_phrase_tokens, self.text_encoder
            )
            tokens = getattr(entity, "tokens", None)
            if tokens is None and getattr(entity, "reference", None) is not None:
                if self.entity_encoder is None:
                    raise InputError(
                        f"sample {sample['key']!r} entity {i} has a reference image but no entity encoder was given; "
                        "pass entity_encoder= to train() (cli.train.entity_encoder builds one)"
                    )
                tokens = self.entity_encoder(entity)
            semantic.append(tokens.semantic if tokens is not None else None)
            if tokens is not None:
                has_reference[i] = True
                human = tokens.kind == "human" and tuple(tokens.identity.shape) == (1, self.face_dim)
                is_human[i] = human
                faces.append(tokens.identity if human else None)
                objects.append(None if human else tokens.identity)
            else:
                faces.append(None)
                objects.append(None)
        encoded = {
            "latents": latents.float(),
            "prompt_embeds": prompt_embeds.float(),
            "null_flow": self.null_flow(num_frames, height, width).float(),
            "positions": positions,
            "visible": visible,
            "text": text,
            "text_mask": text_mask,
            "has_reference": has_reference,
            "is_human": is_human,
            "semantic": _stack(semantic, (1, self.semantic_dim)),
            "object": _stack(objects, (1, self.object_dim)),
            "face": _stack(faces, (1, self.face_dim)),
        }
        if paths:
            encoded["flow"] = flow_latents(self.vae, [paths], [masks], height, width)[0].float()
        else:
            encoded["flow"] = encoded["null_flow"]
        return encoded


def pipeline_entity_encoder(components: dict) -> EntityEncoder:
    """The pipeline's own fallback (``Tora2Pipeline.encode_entity_images``: semantic tokens + pooled
    patch tokens from ``image_encoder``), so training without the ``entities`` package conditions as
    ``Tora2Pipeline`` does on entity images given without tokens."""
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline
    from tora2.specs import EntitySpec

    keys = ("tokenizer", "text_encoder", "vae", "transformer", "scheduler", "personalization", "image_encoder")
    pipe = Tora2Pipeline(**{k: components.get(k) for k in keys})

    def encode(entity) -> EntityTokens:
        spec = EntitySpec(text=entity.text, image=entity.reference, kind="object")
        with torch.no_grad():
            return pipe.encode_entity_images([spec])[0].tokens

    return encode


def _stack(rows: list, fallback_shape: tuple[int, int]) -> torch.Tensor:
    """Stack per-entity (n, C) tensors into (E, n, C); missing rows are zeros shaped like the others."""
    present = [r for r in rows if r is not None]
    shape = tuple(present[0].shape) if present else fallback_shape
    out = torch.zeros(len(rows), *shape)
    for i, row in enumerate(rows):
        if row is not None:
            if tuple(row.shape) != shape:
                raise InputError(f"entity token shapes differ within a clip: {tuple(row.shape)} vs {shape}; use one encoder")
            out[i] = row.float()
    return out


def collate(encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Encoded samples → a batch; entities padded to the batch's largest count with ``entity_mask``."""
    batch = {k: torch.stack([e[k] for e in encoded]) for k in ("latents", "prompt_embeds", "flow", "null_flow")}
    count = max(e["positions"].shape[0] for e in encoded)
    batch["entity_mask"] = torch.zeros(len(encoded), count, dtype=torch.bool)
    for k in ("positions", "visible", "text", "text_mask", "has_reference", "is_human", "semantic", "object", "face"):
        rows = [e[k] for e in encoded]
        tail = max((r.shape[1:] for r in rows if r.shape[0]), default=rows[0].shape[1:])
        fill = 0.5 if k == "positions" else 0  # padding entities sit at the centre
        padded = torch.full((len(rows), count, *tail), fill, dtype=rows[0].dtype)
        for b, row in enumerate(rows):
            if row.shape[0]:
                if row.shape[1:] != tail:
                    raise InputError(f"entity tensor {k!r} has shape {tuple(row.shape[1:])} in one sample and {tuple(tail)} in another; use one encoder")
                padded[b, : row.shape[0]] = row
        batch[k] = padded
    for b, e in enumerate(encoded):
        batch["entity_mask"][b, : e["positions"].shape[0]] = True
    return batch
