"""Timestep-independent conditioning, shared by inference (Tora2Pipeline) and training.

Glossary: B batch, E entities, F pixel frames, Fl latent frames, C latent channels, H/W pixel size,
h/w latent size, L prompt tokens, Lc entity-phrase tokens, D text width, Q personalization tokens,
De entity width.

* ``encode_prompt``: T5 hidden states exactly as diffusers' CogVideoXPipeline computes them
  (padded to ``max_sequence_length``, the encoder run without an attention mask).
* ``phrase_token_embeds``: an entity phrase's hidden states inside the prompt encoding (c_i).
* ``flow_latents``: joint Tora flow of every path → RGB → VAE latents (the transformer's ``video_flow``).
* ``reference_latents``: each entity's reference image through the video VAE (models with
  ``reference_latent_size``).
* ``placement_latents``: every entity's reference pasted at its path point in every frame, through
  the video VAE, plus the coverage (models with ``entity_placement_channels``).
* ``entity_conditions``: every per-entity tensor ``Tora2Transformer3DModel.prepare_conditions`` takes.

Dropped conditions (classifier-free guidance, condition dropout in training) have one meaning each:
no text = the empty prompt ""; no reference = ``entity_personalization_valid`` False; no trajectory
= the flow latents of a zero flow (``null_flow_latents``) with every entity frame invisible. Either
of the last two also zeroes the placement latents (they need both a reference and a path).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from tora2.compositing import paste_sprite
from tora2.errors import InputError
from tora2.models.encoders import white_square
from tora2.pipelines.components import vae_compression
from tora2.pipelines.model_info import check_size
from tora2.specs import EntitySpec
from tora2.trajectory import flow_to_rgb, latent_positions, render_flow

DEFAULT_MAX_PHRASE_TOKENS = 16
# Placement video: a reference's longer side as a fraction of the frame's shorter side. A path gives
# no size, so every entity is placed at the middle of the synthetic sprites' range (0.16–0.26), in
# training and in sampling alike; the model learns to draw the entity's own size around it.
PLACEMENT_SIZE = 0.21


# ------------------------------------------------------------------------------------------ text
def tokenize(tokenizer, prompts: Sequence[str], max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) input ids and (B, L) bool mask, padded/truncated to ``max_sequence_length`` (+ EOS)."""
    inputs = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    return inputs.input_ids, inputs.attention_mask.bool()


@torch.no_grad()
def encode_prompt(
    tokenizer,
    text_encoder,
    prompts: str | Sequence[str],
    max_sequence_length: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts → (B, L, D) hidden states and (B, L) bool token mask, L = ``max_sequence_length``.

    Like CogVideoX, the encoder sees the padded ids without an attention mask (the transformer was
    trained on exactly these states, padding included); the mask is returned for phrase lookup.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    device = device or text_encoder.device
    ids, mask = tokenize(tokenizer, prompts, max_sequence_length)
    embeds = text_encoder(ids.to(text_encoder.device))[0]  # (B, L, D)
    return embeds.to(device=device, dtype=dtype or text_encoder.dtype), mask.to(device)


def _find_span(sequence: list[int], pattern: list[int]) -> int | None:
    for start in range(len(sequence) - len(pattern) + 1):
        if sequence[start : start + len(pattern)] == pattern:
            return start
    return None


def _word_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


@torch.no_grad()
def phrase_token_embeds(
    tokenizer,
    prompt_embeds: torch.Tensor,
    prompt: str,
    phrase: str,
    max_len: int = DEFAULT_MAX_PHRASE_TOKENS,
    text_encoder=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The entity phrase's tokens inside one prompt's encoding → (max_len, D) and (max_len,) bool.

    prompt_embeds: (L, D), the prompt's ``encode_prompt`` output. The phrase's token ids are looked
    up in the prompt's ids (first occurrence within the encoded length); when absent (or truncated
    away), the phrase is encoded on its own with ``text_encoder`` (required then). Rows past the
    phrase's length are zero and masked out; a phrase longer than ``max_len`` keeps its first tokens.
    """
    if prompt_embeds.ndim != 2:
        raise ValueError(f"prompt_embeds must be (L, D) for one prompt; got {tuple(prompt_embeds.shape)}")
    phrase = (phrase or "").strip()
    length, dim = prompt_embeds.shape
    out = prompt_embeds.new_zeros(max_len, dim)  # (Lc, D)
    mask = torch.zeros(max_len, dtype=torch.bool, device=prompt_embeds.device)
    pattern = _word_ids(tokenizer, phrase)
    if not pattern:
        return out, mask  # no phrase: no text tokens for this entity
    prompt_ids = _word_ids(tokenizer, prompt)[: length - 1]  # the encoded part (one slot is EOS)
    start = _find_span(prompt_ids, pattern)
    if start is not None:
        states = prompt_embeds[start : start + len(pattern)]  # (n, D)
    else:
        if text_encoder is None:
            raise InputError(f"entity phrase {phrase!r} is not in the prompt; pass text_encoder to encode it separately")
        states = encode_prompt(tokenizer, text_encoder, [phrase], length, prompt_embeds.device, prompt_embeds.dtype)[0][0]
        states = states[: min(len(pattern), length - 1)]  # the phrase's tokens, without EOS and padding
    n = min(len(states), max_len)
    out[:n] = states[:n]
    mask[:n] = True
    return out, mask


# ------------------------------------------------------------------------------------------ flow
def check_frame_size(vae, patch_size: int, num_frames: int, height: int, width: int) -> None:
    """Frames 2·temporal·k+1 and sizes multiples of spatial·patch_size for this VAE (see model_info.check_size)."""
    temporal, spatial = vae_compression(vae)
    check_size(temporal, spatial, patch_size, num_frames, height, width)


def num_latent_frames(vae, num_frames: int) -> int:
    temporal, _ = vae_compression(vae)
    return (num_frames - 1) // temporal + 1


@torch.no_grad()
def encode_video(vae, video: torch.Tensor, generator: torch.Generator | None = None, sample_mode: str = "mode") -> torch.Tensor:
    """(B, F, 3, H, W) in [−1, 1] → (B, Fl, C, h, w) scaled latents (``× vae.config.scaling_factor``).

    ``sample_mode``: "mode" (deterministic; the default here) or "sample" (Tora's pipeline samples
    the posterior; pass ``generator`` for determinism).
    """
    if sample_mode not in ("mode", "sample"):
        raise ValueError(f"sample_mode must be 'mode' or 'sample'; got {sample_mode!r}")
    x = rearrange(video, "b f c h w -> b c f h w").to(device=vae.device, dtype=vae.dtype)
    dist = vae.encode(x).latent_dist
    latents = dist.mode() if sample_mode == "mode" else dist.sample(generator)  # (B, C, Fl, h, w)
    return rearrange(latents, "b c f h w -> b f c h w") * vae.config.scaling_factor  # (B, Fl, C, h, w)


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """(B, Fl, C, h, w) scaled latents → (B, 3, F, H, W) in about [−1, 1]: the inverse of :func:`encode_video`
    (differentiable: training decodes its denoised estimates through it)."""
    latents = rearrange(latents, "b f c h w -> b c f h w") / vae.config.scaling_factor
    return vae.decode(latents.to(vae.dtype)).sample  # (B, 3, F, H, W)


def flow_video(paths: Sequence[np.ndarray], visible: Sequence[np.ndarray] | None, height: int, width: int) -> torch.Tensor:
    """One video's paths → joint flow → RGB (F, 3, H, W) in [−1, 1]."""
    flow = render_flow(list(paths), height, width, visible=None if visible is None else list(visible))  # (F, H, W, 2)
    return torch.from_numpy(np.ascontiguousarray(flow_to_rgb(flow))).permute(0, 3, 1, 2)  # (F, 3, H, W)


@torch.no_grad()
def flow_latents(
    vae,
    tracks_points: Sequence[Sequence[np.ndarray]],
    visible: Sequence[Sequence[np.ndarray] | None] | None,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    sample_mode: str = "mode",
) -> torch.Tensor:
    """Per video, its entities' (F, 2) pixel paths → (B, Fl, C, h, w) VAE-encoded joint flow.

    tracks_points: B lists of paths (a video with no path gets the zero flow); visible: B lists of
    (F,) bool masks or None. Tora's semantics: displacement p[t+1]−p[t] written at p[t] in frame
    t+1, Gaussian-spread, clip-normalised RGB, VAE-encoded, scaled by ``vae.config.scaling_factor``.
    """
    videos = []
    for b, paths in enumerate(tracks_points):
        masks = None if visible is None else visible[b]
        if len(paths) == 0:
            raise InputError(f"video {b} has no path; use null_flow_latents for a dropped trajectory")
        videos.append(flow_video(paths, masks, height, width))
    return encode_video(vae, torch.stack(videos), generator, sample_mode)  # (B, Fl, C, h, w)


@torch.no_grad()
def null_flow_latents(vae, num_frames: int, height: int, width: int, batch_size: int = 1) -> torch.Tensor:
    """The dropped trajectory: latents of the zero flow (an all-white RGB clip), (B, Fl, C, h, w)."""
    white = torch.ones(1, num_frames, 3, height, width)
    return encode_video(vae, white).expand(batch_size, -1, -1, -1, -1).clone()


# ------------------------------------------------------------------------------------------ entities
@torch.no_grad()
def reference_latents(vae, entities: Sequence[Sequence[EntitySpec]], num_entities: int, latent_size: int) -> torch.Tensor:
    """B lists of EntitySpec → (B, E, C, r, r), r = ``latent_size``: each entity's image on white
    (``white_square``, the crop convention), resized to r × the VAE's spatial factor and encoded as a
    one-frame video (posterior mode, scaled like every latent). Zeros where there is no image."""
    _, spatial = vae_compression(vae)
    side = latent_size * spatial
    images, where = [], []
    for b, sample in enumerate(entities):
        for i, entity in enumerate(sample):
            if entity.image is not None:
                square = Image.fromarray(white_square(entity.image)).resize((side, side), Image.Resampling.LANCZOS)
                images.append(torch.from_numpy(np.array(square)).permute(2, 0, 1).float() / 127.5 - 1)  # (3, s, s)
                where.append((b, i))
    out = torch.zeros(len(entities), num_entities, vae.config.latent_channels, latent_size, latent_size)
    if images:
        encoded = encode_video(vae, torch.stack(images)[:, None])[:, 0]  # (K, 1, 3, s, s) → (K, C, r, r)
        for (b, i), latents in zip(where, encoded):
            out[b, i] = latents.float()
    return out  # (B, E, C, r, r)


def placement_video(entities: Sequence[EntitySpec], num_frames: int, height: int, width: int) -> torch.Tensor:
    """One video's entities → (F, 4, H, W): RGB in [−1, 1] on grey (0) and coverage in [0, 1], each
    entity with a reference and a path pasted upright at its point in its visible frames, longer side
    ``PLACEMENT_SIZE`` × the shorter frame side (first entity below, last on top, as the renders)."""
    canvas = np.zeros((num_frames, height, width, 4), np.float32)
    canvas[..., :3] = 127.5
    size = PLACEMENT_SIZE * min(height, width)
    for entity in entities:
        if entity.image is None or entity.trajectory is None:
            continue
        image = np.asarray(entity.image.convert("RGBA") if isinstance(entity.image, Image.Image) else entity.image)
        if image.shape[2] == 3:  # no alpha: the whole crop is the entity
            image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
        visible = np.ones(num_frames, bool) if entity.visible is None else np.asarray(entity.visible, bool)
        for f in np.flatnonzero(visible):
            paste_sprite(canvas[f], image, np.asarray(entity.trajectory[f], np.float64), size, 0.0)  # in place
    video = torch.from_numpy(canvas).permute(0, 3, 1, 2)  # (F, 4, H, W)
    return torch.cat([video[:, :3] / 127.5 - 1.0, video[:, 3:]], dim=1)


@torch.no_grad()
def placement_latents(vae, entities: Sequence[Sequence[EntitySpec]], num_frames: int, height: int, width: int,
                      canvases: int = 1) -> torch.Tensor:
    """B lists of EntitySpec → (B, Fl, S·(C + 1), h, w): :func:`placement_video` through the VAE less
    the empty grey canvas's latents (so no entity reads as zeros, like a dropped one), then the
    coverage average-pooled to the latent grid at each latent frame's last pixel frame. ``canvases``
    S = 1 pastes every entity on one canvas; S > 1 gives entity i a canvas of its own in slot i
    (slots without an entity, or with no reference or no path, are zeros)."""
    if canvases > 1 and any(len(sample) > canvases for sample in entities):
        raise InputError(f"{max(map(len, entities))} entities given; this model places at most {canvases}, "
                         f"so give at most {canvases}")
    temporal, spatial = vae_compression(vae)
    if canvases == 1:
        groups = [list(sample) for sample in entities]  # B canvases
    else:  # B·S canvases, one entity each
        groups = [[sample[i]] if i < len(sample) else [] for sample in entities for i in range(canvases)]
    videos = torch.stack([placement_video(group, num_frames, height, width) for group in groups])  # (B·S, F, 4, H, W)
    latents = encode_video(vae, videos[:, :, :3])  # (B·S, Fl, C, h, w)
    empty = encode_video(vae, torch.zeros(1, num_frames, 3, height, width))  # (1, Fl, C, h, w)
    frames = [min(k * temporal, num_frames - 1) for k in range(latents.shape[1])]
    coverage = torch.nn.functional.avg_pool2d(videos[:, frames, 3], spatial)  # (B·S, Fl, h, w)
    placed = torch.cat([(latents - empty).float(), coverage[:, :, None]], dim=2)  # (B·S, Fl, C + 1, h, w)
    placed[videos[:, :, 3].flatten(1).amax(1) == 0] = 0.0  # nothing pasted: exactly zeros
    return rearrange(placed, "(b s) f c h w -> b f (s c) h w", s=canvases)  # (B, Fl, S·(C + 1), h, w)


def _check_entity(entity: EntitySpec, index: int, num_frames: int) -> None:
    if entity.trajectory is None:
        return
    points = np.asarray(entity.trajectory)
    if points.shape != (num_frames, 2):
        raise InputError(
            f"entity {index} ({entity.text!r}): trajectory is {points.shape}, expected ({num_frames}, 2) "
            f"for num_frames={num_frames}; resample the path to the video length"
        )
    if entity.visible is not None and np.asarray(entity.visible).shape != (num_frames,):
        raise InputError(f"entity {index} ({entity.text!r}): visible is {np.asarray(entity.visible).shape}, expected ({num_frames},)")


@torch.no_grad()
def frozen_entity_inputs(
    entities: Sequence[Sequence[EntitySpec]],
    prompts: Sequence[str],
    prompt_embeds: torch.Tensor,
    tokenizer,
    text_encoder,
    vae,
    personalization=None,
    *,
    num_frames: int,
    height: int,
    width: int,
    max_phrase_tokens: int = DEFAULT_MAX_PHRASE_TOKENS,
    trim_phrases: bool = True,
    generator: torch.Generator | None = None,
    sample_mode: str = "mode",
    reference_latent_size: int | None = None,
    placement: int | None = None,
) -> dict[str, torch.Tensor | None]:
    """The frozen half of the per-entity conditioning (no trainable module runs; training caches it).

    entities: B lists of EntitySpec (``.tokens`` set for a reference); prompts: B prompts whose
    encodings are ``prompt_embeds`` (B, L, D). Returns ``video_flow`` (B, Fl, C, h, w) or None when
    there is no entity, and — when any sample has an entity, padded to E = the largest count —
    entity_positions (B, E, Fl, 2) in [0, 1] (an entity without a path sits at the centre,
    invisible), entity_visible (B, E, Fl), entity_text_embeds (B, E, Lc, D) and entity_text_mask
    (B, E, Lc) (Lc = the longest phrase, or ``max_phrase_tokens`` with ``trim_phrases=False``),
    entity_mask (B, E), and the reference tokens stacked for the extractor by
    ``PersonalizationExtractor.stack_tokens`` (tokens_semantic, tokens_object, tokens_face,
    tokens_is_human, tokens_valid; absent without ``personalization``) and, with
    ``reference_latent_size`` (the transformer's field of that name), entity_reference_latents
    (B, E, C, r, r) from :func:`reference_latents`; with ``placement`` (the transformer's
    ``placement_canvases`` S), entity_placement (B, Fl, S·(C + 1), h, w) from :func:`placement_latents`.
    """
    batch = len(entities)
    if len(prompts) != batch or prompt_embeds.shape[0] != batch:
        raise ValueError(f"need one prompt and one prompt encoding per sample: {batch} entity lists, "
                         f"{len(prompts)} prompts, {prompt_embeds.shape[0]} encodings")
    temporal, _ = vae_compression(vae)
    frames_latent = num_latent_frames(vae, num_frames)
    for sample in entities:
        for i, entity in enumerate(sample):
            _check_entity(entity, i, num_frames)

    # 1. Joint flow per sample, the samples with a path in one VAE call (the others: the zero flow).
    paths = [[np.asarray(e.trajectory, dtype=np.float64) for e in sample if e.trajectory is not None] for sample in entities]
    video_flow = None
    num_entities = max((len(s) for s in entities), default=0)
    if any(paths) or num_entities:
        masks = [
            [np.ones(num_frames, bool) if e.visible is None else np.asarray(e.visible, bool) for e in sample if e.trajectory is not None]
            for sample in entities
        ]
        with_path = [b for b in range(batch) if paths[b]]
        rows = null_flow_latents(vae, num_frames, height, width, batch)  # (B, Fl, C, h, w)
        if with_path:
            flows = flow_latents(vae, [paths[b] for b in with_path], [masks[b] for b in with_path], height, width,
                                 generator, sample_mode)
            rows = rows.to(flows.dtype)
            rows[with_path] = flows
        video_flow = rows
    out: dict[str, torch.Tensor | None] = {"video_flow": video_flow}
    if num_entities == 0:
        return out

    # 2. Positions and visibility per latent frame.
    device, dim = prompt_embeds.device, prompt_embeds.shape[-1]
    positions = np.full((batch, num_entities, frames_latent, 2), 0.5, np.float32)
    visible = np.zeros((batch, num_entities, frames_latent), bool)
    entity_mask = torch.zeros(batch, num_entities, dtype=torch.bool)
    for b, sample in enumerate(entities):
        for i, entity in enumerate(sample):
            entity_mask[b, i] = True
            if entity.trajectory is None:
                continue
            vis = np.ones(num_frames, bool) if entity.visible is None else np.asarray(entity.visible, bool)
            positions[b, i], visible[b, i] = latent_positions(
                np.asarray(entity.trajectory), vis, frames_latent, temporal, height=height, width=width
            )

    # 3. Phrase tokens c_i, padded to a common Lc (the longest phrase, at most max_phrase_tokens).
    text = torch.zeros(batch, num_entities, max_phrase_tokens, dim, dtype=prompt_embeds.dtype, device=device)
    text_mask = torch.zeros(batch, num_entities, max_phrase_tokens, dtype=torch.bool, device=device)
    for b, sample in enumerate(entities):
        for i, entity in enumerate(sample):
            text[b, i], text_mask[b, i] = phrase_token_embeds(
                tokenizer, prompt_embeds[b], prompts[b], entity.text, max_phrase_tokens, text_encoder
            )
    if trim_phrases:
        lc = max(1, int(text_mask.sum(-1).max()))
        text, text_mask = text[:, :, :lc], text_mask[:, :, :lc]  # (B, E, Lc, D)
    out.update(
        entity_positions=torch.from_numpy(positions).to(device),
        entity_visible=torch.from_numpy(visible).to(device),
        entity_text_embeds=text,
        entity_text_mask=text_mask,
        entity_mask=entity_mask.to(device),
    )

    # 4. Reference tokens, stacked (B·E rows; entities without tokens are invalid zero rows).
    if personalization is not None:
        flat = [e.tokens if i < len(s) else None for s in entities for i, e in enumerate(list(s) + [None] * (num_entities - len(s)))]
        stacks = personalization.stack_tokens(flat)
        for key, value in stacks.items():
            out[f"tokens_{key}"] = value.reshape(batch, num_entities, *value.shape[1:])  # (B, E, ...)

    # 5. Reference latents (models that read them).
    if reference_latent_size is not None:
        out["entity_reference_latents"] = reference_latents(vae, entities, num_entities, reference_latent_size).to(device)

    # 6. Placement latents (models that read them).
    if placement:
        out["entity_placement"] = placement_latents(vae, entities, num_frames, height, width, placement).to(device)
    return out


def personalization_tokens(personalization, inputs: dict) -> tuple[torch.Tensor | None, torch.Tensor]:
    """p_i (B, E, Q, De) and its validity (B, E) from ``frozen_entity_inputs``' token stacks; the one
    place where training (with gradient into the extractor) and sampling run the extractor."""
    valid = inputs["tokens_valid"]
    if personalization is None or not valid.any():
        return None, valid
    size, count = valid.shape
    flat = lambda x: x.reshape(size * count, *x.shape[2:]).to(personalization.device)  # noqa: E731  (B·E, ...)
    p = personalization(
        flat(inputs["tokens_semantic"]).to(personalization.dtype),
        flat(inputs["tokens_object"]).to(personalization.dtype),
        flat(inputs["tokens_face"]).to(personalization.dtype),
        flat(inputs["tokens_is_human"]),
    )  # (B·E, Q, De)
    p = p * flat(valid)[:, None, None].to(p.dtype)  # entities without a reference: zeros
    return p.reshape(size, count, *p.shape[1:]), valid  # (B, E, Q, De)


@torch.no_grad()
def entity_conditions(
    entities: Sequence[Sequence[EntitySpec]],
    prompts: Sequence[str],
    prompt_embeds: torch.Tensor,
    tokenizer,
    text_encoder,
    vae,
    personalization=None,
    **options,
) -> dict[str, torch.Tensor | None]:
    """Per sample, its entities → the transformer's conditioning inputs: :func:`frozen_entity_inputs`
    (``options``: its keyword arguments — num_frames, height, width, …) plus entity_personalization
    (B, E, Q, De) or None and entity_personalization_valid (B, E) from :func:`personalization_tokens`."""
    frozen = frozen_entity_inputs(entities, prompts, prompt_embeds, tokenizer, text_encoder, vae, personalization, **options)
    out = {k: v for k, v in frozen.items() if not k.startswith("tokens_")}
    if "entity_mask" not in out:
        return out
    device = prompt_embeds.device
    if personalization is None:
        p, valid = None, torch.zeros_like(out["entity_mask"])
    else:
        p, valid = personalization_tokens(personalization, frozen)
    out.update(entity_personalization=None if p is None else p.to(device), entity_personalization_valid=valid.to(device))
    return out
