"""Timestep-independent conditioning, shared by inference (Tora2Pipeline) and training.

Glossary: B batch, E entities, F pixel frames, Fl latent frames, C latent channels, H/W pixel size,
h/w latent size, L prompt tokens, Lc entity-phrase tokens, D text width, Q personalization tokens,
De entity width.

* ``encode_prompt``: T5 hidden states exactly as diffusers' CogVideoXPipeline computes them
  (padded to ``max_sequence_length``, the encoder run without an attention mask).
* ``phrase_token_embeds``: an entity phrase's hidden states inside the prompt encoding (c_i).
* ``flow_latents``: joint Tora flow of every path → RGB → VAE latents (the transformer's ``video_flow``).
* ``entity_conditions``: every per-entity tensor ``Tora2Transformer3DModel.prepare_conditions`` takes.

Dropped conditions (classifier-free guidance, condition dropout in training) have one meaning each:
no text = the empty prompt ""; no reference = ``entity_personalization_valid`` False; no trajectory
= the flow latents of a zero flow (``null_flow_latents``) with every entity frame invisible.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from einops import rearrange

from tora2.errors import InputError
from tora2.pipelines.components import vae_compression
from tora2.specs import EntitySpec
from tora2.trajectory import flow_to_rgb, latent_positions, render_flow

DEFAULT_MAX_PHRASE_TOKENS = 16


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
    """Frames 8k+1 and sizes multiples of 8·patch_size (CogVideoX's VAE); one line naming the fix."""
    temporal, spatial = vae_compression(vae)
    # CogVideoX's VAE decodes latent frames in pairs after a leading odd one: only an odd latent
    # count (num_frames = 2·temporal·k + 1, i.e. 8k+1 for 4×) decodes back to num_frames frames.
    step = 2 * temporal
    if num_frames < 1 or (num_frames - 1) % step:
        below = (num_frames - 1) // step * step + 1
        raise InputError(
            f"num_frames {num_frames} cannot be produced: it must be {step}k+1 (temporal compression {temporal}, "
            f"odd latent frame count), e.g. {max(1, below)} or {below + step}"
        )
    multiple = spatial * patch_size
    for name, value in (("height", height), ("width", width)):
        if value < multiple or value % multiple:
            raise InputError(
                f"{name} {value} cannot be produced: it must be a positive multiple of {multiple} "
                f"({spatial}× VAE × patch size {patch_size}), e.g. {max(multiple, value // multiple * multiple)}"
            )


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
def entity_conditions(
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
    generator: torch.Generator | None = None,
    sample_mode: str = "mode",
) -> dict[str, torch.Tensor | None]:
    """Per sample, its entities → the transformer's conditioning inputs (padded to E = max count).

    entities: B lists of EntitySpec (``.tokens`` set for a reference, else no reference); prompts: B
    prompts whose encodings are ``prompt_embeds`` (B, L, D). Returns ``video_flow`` (B, Fl, C, h, w)
    or None when there is no entity, and — when any sample has an entity — entity_positions
    (B, E, Fl, 2) in [0, 1], entity_visible (B, E, Fl), entity_personalization (B, E, Q, De) or None,
    entity_personalization_valid (B, E), entity_text_embeds (B, E, Lc, D), entity_text_mask (B, E, Lc),
    entity_mask (B, E). An entity without a trajectory sits at the centre, invisible.
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

    # 1. Joint flow per sample (samples without any path get the zero flow).
    paths = [[np.asarray(e.trajectory, dtype=np.float64) for e in sample if e.trajectory is not None] for sample in entities]
    video_flow = None
    if any(paths):
        masks = [
            [np.ones(num_frames, bool) if e.visible is None else np.asarray(e.visible, bool) for e in sample if e.trajectory is not None]
            for sample in entities
        ]
        rows = []
        for b in range(batch):
            if paths[b]:
                rows.append(flow_latents(vae, [paths[b]], [masks[b]], height, width, generator, sample_mode))
            else:
                rows.append(null_flow_latents(vae, num_frames, height, width))
        video_flow = torch.cat(rows)  # (B, Fl, C, h, w)
    out: dict[str, torch.Tensor | None] = {"video_flow": video_flow}
    num_entities = max((len(s) for s in entities), default=0)
    if num_entities == 0:
        return out
    if video_flow is None:  # entities but no path anywhere: their motion tokens read the zero flow
        out["video_flow"] = null_flow_latents(vae, num_frames, height, width, batch)

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
    lc = max(1, int(text_mask.sum(-1).max()))
    text, text_mask = text[:, :, :lc], text_mask[:, :, :lc]  # (B, E, Lc, D)

    # 4. Personalization p_i from the frozen-encoder tokens (entities without tokens: invalid, zeros).
    p = None
    p_valid = torch.zeros(batch, num_entities, dtype=torch.bool)
    if personalization is not None:
        tokens = [(b, i, e.tokens) for b, s in enumerate(entities) for i, e in enumerate(s) if e.tokens is not None]
        if tokens:
            encoded = personalization.encode([t for _, _, t in tokens])  # (n, Q, De)
            p = encoded.new_zeros(batch, num_entities, *encoded.shape[1:])  # (B, E, Q, De)
            for row, (b, i, _) in enumerate(tokens):
                p[b, i] = encoded[row]
                p_valid[b, i] = True
    out.update(
        entity_positions=torch.from_numpy(positions).to(device),
        entity_visible=torch.from_numpy(visible).to(device),
        entity_personalization=None if p is None else p.to(device),
        entity_personalization_valid=p_valid.to(device),
        entity_text_embeds=text,
        entity_text_mask=text_mask,
        entity_mask=entity_mask.to(device),
    )
    return out
