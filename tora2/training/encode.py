"""Frozen encoders, run once per clip: VAE latents, text embeddings, flow latents, entity tokens.

The conditioning is the pipeline's own recipe: ``conditioning.frozen_entity_inputs`` (flow, positions,
phrase tokens, reference tokens stacked by ``PersonalizationExtractor.stack_tokens``) here, cached,
and ``conditioning.personalization_tokens`` in the training step — the same two functions
``Tora2Pipeline`` runs, so training and inference cannot condition differently. Only the trainable
parts (the PersonalizationExtractor and the transformer) run in the training step.

An encoded sample is a flat dict of tensors (saved as one safetensors file per clip in the cache):

    latents (Fl, C, h, w)   prompt_embeds (L, D)   flow (Fl, C, h, w)   null_flow (Fl, C, h, w)
    positions (E, Fl, 2)    visible (E, Fl)        text (E, Lc, D)      text_mask (E, Lc)
    semantic (E, Ns, Cs)    object (E, Ni, Co)     face (E, 1, Cf)      is_human (E,)   has_reference (E,)
    reference (E, C, r, r)  (only for a transformer with ``reference_latent_size`` r)
    placement (Fl, S·(C + 1), h, w)  (only for a transformer with ``entity_placement_channels``; S canvases)

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
from tora2.pipelines.conditioning import (
    DEFAULT_MAX_PHRASE_TOKENS,
    encode_prompt,
    encode_video,
    frozen_entity_inputs,
    null_flow_latents,
)
from tora2.specs import EntitySpec, EntityTokens

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
        self.reference_latent_size = transformer.config.get("reference_latent_size")
        self.placement = transformer.placement_canvases  # None, 1 or one canvas per entity slot
        self.placement_channels = transformer.entity_placement.in_channels if self.placement else None  # S·(C + 1)
        personalization = components.get("personalization")
        self.personalization = personalization  # only its config is read here (stack_tokens)
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
        # The cached entity tokens come from the frozen image (and face) encoder: its weights key the cache
        # too, or a run with another image encoder would silently train on the old one's tokens.
        entity_models = [components.get(name) for name in ("image_encoder", "face_encoder")]
        entity_ids = ":".join(getattr(m, "encoder_id", None) or _fingerprint(m) for m in entity_models if m is not None)
        self.encoder_id = hashlib.sha256(
            f"{_fingerprint(self.vae)}:{_fingerprint(self.text_encoder)}:{entity_ids}:{self.max_sequence_length}:{max_phrase_tokens}"
            f"{'' if self.reference_latent_size is None else f':ref{self.reference_latent_size}'}"
            f"{'' if not self.placement else ':placement' if self.placement == 1 else f':placement{self.placement}'}".encode()
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
            if self.keep_in_memory:
                self._memory[key] = encoded
            return encoded
        return self.encode_and_store([sample])[0]

    def encode_and_store(self, samples: list[dict]) -> list[dict[str, torch.Tensor]]:
        """Encode ``samples`` together (:meth:`encode_many`) and keep each in the disk cache and memory."""
        encoded = self.encode_many(samples)
        for sample, item in zip(samples, encoded):
            key = str(sample["key"])
            path = self.cache_path(key)
            if path is not None:
                with atomic_output(path, suffix=".tmp") as tmp:
                    save_file({k: v.contiguous() for k, v in item.items()}, str(tmp), metadata={"key": json.dumps(key)})
            if self.keep_in_memory:
                self._memory[key] = item
        return encoded

    def entity_spec(self, sample: dict, index: int, entity, num_frames: int) -> EntitySpec:
        """A training sample's entity as the pipeline's ``EntitySpec``, its reference encoded to tokens."""
        points = np.asarray(entity.points, dtype=np.float64)
        vis = np.asarray(entity.visible, dtype=bool)
        if points.shape != (num_frames, 2) or vis.shape != (num_frames,):
            raise InputError(
                f"sample {sample['key']!r} entity {index}: points {points.shape} / visible {vis.shape} must be "
                f"({num_frames}, 2) / ({num_frames},), one per frame"
            )
        tokens = getattr(entity, "tokens", None)
        if tokens is None and getattr(entity, "reference", None) is not None:
            if self.entity_encoder is None:
                raise InputError(
                    f"sample {sample['key']!r} entity {index} has a reference image but no entity encoder was given; "
                    "pass entity_encoder= to train() (entities.encode.sample_entity_encoder builds one)"
                )
            tokens = self.entity_encoder(entity)
        return EntitySpec(entity.text, image=getattr(entity, "reference", None), trajectory=points, visible=vis,
                          kind=entity.kind, tokens=tokens)

    @torch.no_grad()
    def encode_many(self, samples: list[dict]) -> list[dict[str, torch.Tensor]]:
        """Clips of one size → their cached tensors (module docstring), with the inference recipe
        (``frozen_entity_inputs``) and one VAE call for the videos and one for the flows."""
        for sample in samples:
            video = sample["video"]
            if video.ndim != 4 or video.shape[1] != 3:
                raise InputError(f"sample {sample['key']!r}: video must be (F, 3, H, W) in [-1, 1]; got {tuple(video.shape)}")
        shapes = {tuple(s["video"].shape) for s in samples}
        if len(shapes) > 1:
            return [item for s in samples for item in self.encode_many([s])]
        num_frames, _, height, width = samples[0]["video"].shape
        latents = encode_video(self.vae, torch.stack([s["video"] for s in samples]))  # (B, Fl, C, h, w)
        captions = [s["caption"] for s in samples]
        prompt_embeds = encode_prompt(self.tokenizer, self.text_encoder, captions, self.max_sequence_length)[0]  # (B, L, D)
        specs = [[self.entity_spec(s, i, e, num_frames) for i, e in enumerate(s.get("entities", []))] for s in samples]
        frozen = frozen_entity_inputs(
            specs, captions, prompt_embeds, self.tokenizer, self.text_encoder, self.vae, self.personalization,
            num_frames=num_frames, height=height, width=width, max_phrase_tokens=self.max_phrase_tokens, trim_phrases=False,
            reference_latent_size=self.reference_latent_size, placement=self.placement,
        )
        null_flow = self.null_flow(num_frames, height, width).float()
        frames_latent, dim = latents.shape[1], prompt_embeds.shape[-1]
        empty = {  # a clip without entities: E = 0 rows
            "positions": torch.zeros(0, frames_latent, 2), "visible": torch.zeros(0, frames_latent, dtype=torch.bool),
            "text": torch.zeros(0, self.max_phrase_tokens, dim), "text_mask": torch.zeros(0, self.max_phrase_tokens, dtype=torch.bool),
            "has_reference": torch.zeros(0, dtype=torch.bool), "is_human": torch.zeros(0, dtype=torch.bool),
            "semantic": torch.zeros(0, 1, self.semantic_dim), "object": torch.zeros(0, 1, self.object_dim),
            "face": torch.zeros(0, 1, self.face_dim),
        }
        names = {"positions": "entity_positions", "visible": "entity_visible", "text": "entity_text_embeds",
                 "text_mask": "entity_text_mask", "has_reference": "tokens_valid", "is_human": "tokens_is_human",
                 "semantic": "tokens_semantic", "object": "tokens_object", "face": "tokens_face"}
        if self.reference_latent_size is not None:
            size = self.reference_latent_size
            empty["reference"] = torch.zeros(0, self.vae.config.latent_channels, size, size)
            names["reference"] = "entity_reference_latents"
        out = []
        for b, entities in enumerate(specs):
            count = len(entities)
            item = {
                "latents": latents[b].float(),
                "prompt_embeds": prompt_embeds[b].float(),
                "null_flow": null_flow,
                "flow": frozen["video_flow"][b].float() if count else null_flow,
            }
            if self.placement:  # (Fl, S·(C + 1), h, w); no entity: nothing placed
                item["placement"] = frozen["entity_placement"][b].float() if count else torch.zeros(
                    frames_latent, self.placement_channels, *latents.shape[-2:])
            for key, name in names.items():
                value = frozen.get(name)
                if count and value is not None:
                    value = value[b, :count]
                    item[key] = value.float() if value.is_floating_point() else value
                elif count:  # no personalization module: no reference tokens
                    item[key] = torch.zeros(count, *empty[key].shape[1:], dtype=empty[key].dtype)
                else:
                    item[key] = empty[key]
            out.append(item)
        return out


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


def collate(encoded: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Encoded samples → a batch; entities padded to the batch's largest count with ``entity_mask``."""
    batch = {k: torch.stack([e[k] for e in encoded]) for k in ("latents", "prompt_embeds", "flow", "null_flow")}
    if all("placement" in e for e in encoded):
        batch["placement"] = torch.stack([e["placement"] for e in encoded])  # (B, Fl, C + 1, h, w)
    count = max(e["positions"].shape[0] for e in encoded)
    batch["entity_mask"] = torch.zeros(len(encoded), count, dtype=torch.bool)
    keys = ["positions", "visible", "text", "text_mask", "has_reference", "is_human", "semantic", "object", "face"]
    if all("reference" in e for e in encoded):
        keys.append("reference")  # (B, E, C, r, r): encoded for a transformer that reads reference latents
    for k in keys:
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
