"""Tora2Transformer3DModel: CogVideoX 1.0 DiT + Tora's motion guidance + Tora2's entity binding.

Glossary: B batch, F latent frames, C latent channels, H/W latent size, h/w token grid (H/p, W/p),
Cp placement channels (C + 1 per canvas; max_entities canvases with ``entity_placement_per_entity``),
N video tokens (F·h·w), L text tokens, D hidden, E entities, Q personalization tokens per entity,
Lc entity-phrase tokens, De entity width, S injected entity tokens per sample (E·(Q + F)),
r reference latent side, R reference tokens per entity ((r / patch_size)²).

Block order ("M→P", the paper's): MGF on the normed video tokens → 3D full attention over
text + video → entity cross-attention → FFN. ``block_order="personalization_first"`` is the
paper's P→M ablation (entity cross-attention at the start of the block). With
``reference_latent_size`` (beyond the paper, off by default), a second trajectory-located
cross-attention right after the entity one reads each entity's reference latents (its image
through the video VAE), so appearance reaches every frame from the same source. With
``entity_placement_channels`` (beyond the paper, off by default), the placement latents — every
entity's reference pasted at its path point in every frame, through the VAE, plus its coverage — are
patch-embedded by a zero-initialised layer and added to the video tokens, as CogVideoX-I2V adds its
image latents, so each entity's look arrives where and when it is asked for. By default every
entity is pasted on one canvas (where paths cross, the last covers the others); with
``entity_placement_per_entity`` each entity slot has a canvas of its own (entity i in channels
i·(C + 1) … (i + 1)·(C + 1)), so overlapping entities stay apart and the slot says which is which.
With ``entity_placement_skip`` as well, a zero-initialised per-pixel linear map
(``entity_placement_out``) from the placement latents is added to the model's output (x-prediction:
the clean latents), so the pasted look reaches the output without passing through the hidden width,
which is narrower than a token of wide latents (a 36-channel linear autoencoder: 144 values a token,
width 128). Measured on the embedded model, it did not help (docs/results.md, "Linear latents").
With ``output_refiner_channels`` (beyond the paper, off by default) a small per-frame convolutional
network (``GridResidual``) reads the unpatchified output and the noisy input and adds a
zero-initialised residual to the output, so neighbouring tokens' predictions can be reconciled
across token borders (the embedded model's linear latents show each token's error as a 4×4-pixel block).

Key names are a file format: every CogVideoX key is unchanged and Tora's are ``traj_extractor.*``
and ``fuser.{i}.*``, so diffusers CogVideoX and the public Tora T2V transformer load into this class.
With no ``video_flow`` and no entity inputs this model computes exactly CogVideoX; every Tora2
addition starts as an identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import Attention, AttentionMixin, FeedForward
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import CogVideoXPatchEmbed, TimestepEmbedding, Timesteps
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNorm, CogVideoXLayerNormZero
from diffusers.utils import BaseOutput, apply_lora_scale
from einops import rearrange

from tora2.models.binding import (
    ContrastiveHeads,
    EntityCrossAttention,
    EntityMotionTokenizer,
    ReferenceLatentTokenizer,
    build_binder,
    trajectory_locality_bias,
)
from tora2.models.grid import GridResidual
from tora2.models.trajectory import MotionGuidanceFuser, TrajectoryExtractor

BLOCK_ORDERS = ("motion_first", "personalization_first")
TORA_PREFIXES = ("traj_extractor.", "fuser.")
TORA2_PREFIXES = ("entity_", "contrastive.", "output_refiner.")
TORA2_BLOCK_PARTS = (".entity_attn.", ".reference_attn.")


@dataclass
class Tora2TransformerOutput(BaseOutput):
    """sample (B, F, C, H, W); z_p, z_m (B, E, Dc) contrastive embeddings when requested."""

    sample: torch.Tensor
    z_p: torch.Tensor | None = None
    z_m: torch.Tensor | None = None


@dataclass
class Tora2Conditions:
    """Everything that does not depend on the timestep, computed once per generation.

    motion_features: per block (B·F, Cm, h, w), or None without a trajectory.
    motion_modulation: per block (γ, β) each (B·F, D, h, w) when precomputed (costs memory), else None.
    entity_tokens: (B, S, De) bound [p̂_i; m̂_i] + slot embeddings; entity_valid: (B, S) bool.
    entity_bias: (B, N, S) trajectory-located attention bias, when the model has entity locality.
    reference_tokens: (B, E·R, De) reference-latent tokens r_i + slot embeddings; reference_valid
    (B, E·R) bool; reference_bias (B, N, E·R): when the model reads reference latents.
    placement_tokens: (B or 1, N, D) the patch-embedded placement latents, when the model reads them.
    placement_skip: (B or 1, F, C, H, W) the placement latents' linear path to the output, with
    ``entity_placement_skip``.
    z_p, z_m: (B, E, Dc) contrastive embeddings (training).
    """

    motion_features: list[torch.Tensor] | None = None
    motion_modulation: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    entity_tokens: torch.Tensor | None = None
    entity_valid: torch.Tensor | None = None
    entity_bias: torch.Tensor | None = None
    reference_tokens: torch.Tensor | None = None
    reference_valid: torch.Tensor | None = None
    reference_bias: torch.Tensor | None = None
    placement_tokens: torch.Tensor | None = None
    placement_skip: torch.Tensor | None = None
    z_p: torch.Tensor | None = None
    z_m: torch.Tensor | None = None


class Tora2Block(nn.Module):
    """A CogVideoX block (same keys: norm1, attn1, norm2, ff) with the motion and entity hooks."""

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        time_embed_dim: int,
        dropout: float = 0.0,
        activation_fn: str = "gelu-approximate",
        attention_bias: bool = False,
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        entity_dim: int | None = None,
        entity_attention_heads: int = 8,
        entity_attention_head_dim: int = 64,
        block_order: str = "motion_first",
        entity_locality: bool = False,
        entity_references: bool = False,
    ):
        super().__init__()
        self.block_order = block_order
        self.norm1 = CogVideoXLayerNormZero(time_embed_dim, dim, norm_elementwise_affine, norm_eps, bias=True)
        self.attn1 = Attention(
            query_dim=dim,
            dim_head=attention_head_dim,
            heads=num_attention_heads,
            qk_norm="layer_norm",
            eps=1e-6,
            bias=attention_bias,
            out_bias=True,
            processor=CogVideoXAttnProcessor2_0(),
        )
        self.norm2 = CogVideoXLayerNormZero(time_embed_dim, dim, norm_elementwise_affine, norm_eps, bias=True)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn=activation_fn, final_dropout=True, bias=True)
        self.entity_attn = None
        if entity_dim is not None:
            self.entity_attn = EntityCrossAttention(
                dim, entity_dim, entity_attention_heads, entity_attention_head_dim, time_embed_dim, norm_eps,
                locality=entity_locality,
            )
        self.reference_attn = None
        if entity_references:
            self.reference_attn = EntityCrossAttention(
                dim, entity_dim, entity_attention_heads, entity_attention_head_dim, time_embed_dim, norm_eps, locality=True,
            )

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        fuser: MotionGuidanceFuser | None = None,
        motion_feature: torch.Tensor | None = None,
        motion_modulation: tuple[torch.Tensor, torch.Tensor] | None = None,
        token_grid: tuple[int, int, int] | None = None,
        entity_tokens: torch.Tensor | None = None,
        entity_valid: torch.Tensor | None = None,
        entity_bias: torch.Tensor | None = None,
        reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden_states (B, N, D), encoder_hidden_states (B, L, D), temb (B, Dt) → same shapes.
        reference: (tokens, valid, bias) of the reference latents (Tora2Conditions.reference_*)."""
        text_length = encoder_hidden_states.shape[1]
        use_entities = self.entity_attn is not None and entity_tokens is not None
        if use_entities and self.block_order == "personalization_first":
            hidden_states = self._entities(hidden_states, temb, entity_tokens, entity_valid, entity_bias, reference)

        norm_hidden, norm_encoder, gate_msa, enc_gate_msa = self.norm1(hidden_states, encoder_hidden_states, temb)

        # Tora's motion guidance on the normed video tokens, before attention.
        if fuser is not None and (motion_feature is not None or motion_modulation is not None):
            num_frames, h, w = token_grid
            x = rearrange(norm_hidden, "b (f h w) d -> (b f) d h w", f=num_frames, h=h, w=w)  # (B·F, D, h, w)
            gamma, beta = motion_modulation or fuser.modulation(motion_feature, num_frames)
            x = fuser.apply(x, gamma, beta)
            norm_hidden = rearrange(x, "(b f) d h w -> b (f h w) d", f=num_frames)  # (B, N, D)

        attn_hidden, attn_encoder = self.attn1(
            hidden_states=norm_hidden,
            encoder_hidden_states=norm_encoder,
            image_rotary_emb=image_rotary_emb,
            **(attention_kwargs or {}),
        )
        hidden_states = hidden_states + gate_msa * attn_hidden
        encoder_hidden_states = encoder_hidden_states + enc_gate_msa * attn_encoder

        if use_entities and self.block_order == "motion_first":
            hidden_states = self._entities(hidden_states, temb, entity_tokens, entity_valid, entity_bias, reference)

        norm_hidden, norm_encoder, gate_ff, enc_gate_ff = self.norm2(hidden_states, encoder_hidden_states, temb)
        ff_output = self.ff(torch.cat([norm_encoder, norm_hidden], dim=1))  # (B, L+N, D)
        hidden_states = hidden_states + gate_ff * ff_output[:, text_length:]
        encoder_hidden_states = encoder_hidden_states + enc_gate_ff * ff_output[:, :text_length]
        return hidden_states, encoder_hidden_states

    def _entities(self, hidden_states, temb, tokens, valid, bias, reference) -> torch.Tensor:
        """The entity cross-attention, then (when the model has one and references are given) the
        reference-latent cross-attention: (B, N, D) → (B, N, D)."""
        hidden_states = self.entity_attn(hidden_states, temb, tokens, valid, bias)
        if self.reference_attn is not None and reference is not None:
            hidden_states = self.reference_attn(hidden_states, temb, *reference)
        return hidden_states


class Tora2Transformer3DModel(ModelMixin, AttentionMixin, ConfigMixin, PeftAdapterMixin):
    """CogVideoX 1.0 transformer + Tora trajectory guidance + Tora2 multi-entity personalization.

    ``motion_channels=None`` builds no Tora parts; ``entity_dim=None`` builds no Tora2 parts.
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = ["patch_embed", "norm"]
    _no_split_modules = ["Tora2Block", "CogVideoXPatchEmbed"]

    @register_to_config
    def __init__(
        self,
        # CogVideoX (names and defaults as diffusers' CogVideoXTransformer3DModel)
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        # Tora (constants the official code hard-coded)
        motion_in_channels: int | None = None,
        motion_channels: int | None = 128,
        motion_blocks_per_level: int = 2,
        motion_patch_size_t: int = 1,
        motion_norm_groups: int = 32,
        # Tora2
        entity_dim: int | None = 1024,
        max_entities: int = 8,
        num_personalization_tokens: int = 16,
        entity_attention_heads: int = 12,
        entity_attention_head_dim: int = 64,
        binder: str = "gated_attention",
        binder_heads: int = 8,
        motion_frequencies: int = 6,
        contrastive_dim: int = 256,
        contrastive_temperature: float = 0.07,
        block_order: str = "motion_first",
        entity_locality_sigma: float | None = None,
        reference_latent_size: int | None = None,
        entity_placement_channels: int | None = None,
        entity_placement_per_entity: bool = False,
        entity_placement_skip: bool = False,
        output_refiner_channels: int | None = None,
        output_refiner_blocks: int = 2,
    ):
        super().__init__()
        if block_order not in BLOCK_ORDERS:
            raise ValueError(f"block_order must be one of {', '.join(BLOCK_ORDERS)}; got {block_order!r}")
        if entity_dim is not None and motion_channels is None:
            raise ValueError("entity_dim needs motion_channels: Tora2's motion tokens read Tora's motion features")
        if reference_latent_size is not None and (entity_dim is None or entity_locality_sigma is None):
            raise ValueError("reference_latent_size needs entity_dim and entity_locality_sigma: reference tokens are "
                             "placed by the trajectory-located bias")
        if entity_placement_skip and entity_placement_channels is None:
            raise ValueError("entity_placement_skip needs entity_placement_channels: it maps the placement latents to the output")
        if output_refiner_channels is not None and (output_refiner_channels < 1 or output_refiner_blocks < 0):
            raise ValueError(f"output_refiner_channels={output_refiner_channels} must be ≥ 1 (or None: no refiner) and "
                             f"output_refiner_blocks={output_refiner_blocks} ≥ 0")
        inner_dim = num_attention_heads * attention_head_dim

        # 0. Tora: the trajectory extractor and one motion-guidance fuser per block.
        self.traj_extractor = None
        self.fuser = None
        if motion_channels is not None:
            self.traj_extractor = TrajectoryExtractor(
                in_channels=motion_in_channels or in_channels,
                channels=motion_channels,
                num_levels=num_layers,
                blocks_per_level=motion_blocks_per_level,
                patch_size=patch_size,
                patch_size_t=motion_patch_size_t,
            )
            self.fuser = nn.ModuleList(
                [MotionGuidanceFuser(motion_channels, inner_dim, motion_norm_groups) for _ in range(num_layers)]
            )

        # 1. CogVideoX: patch embedding, timestep embedding.
        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=inner_dim,
            text_embed_dim=text_embed_dim,
            bias=patch_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_positional_embeddings=not use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
        )
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_proj = Timesteps(inner_dim, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(inner_dim, time_embed_dim, timestep_activation_fn)

        # 2. Tora2: entity tokens and their binding (shared by all blocks).
        self.entity_motion = None
        self.entity_text_proj = None
        self.entity_slots = None
        self.entity_binder = None
        self.contrastive = None
        self.entity_reference = None
        if reference_latent_size is not None:
            self.entity_reference = ReferenceLatentTokenizer(in_channels, patch_size, reference_latent_size, entity_dim)
        self.entity_placement = None
        if entity_placement_channels is not None:
            # Zero-initialised: a model that gains it starts as the model without it.
            canvases = max_entities if entity_placement_per_entity else 1
            self.entity_placement = nn.Conv2d(canvases * entity_placement_channels, inner_dim, patch_size, stride=patch_size)
            nn.init.zeros_(self.entity_placement.weight)
            nn.init.zeros_(self.entity_placement.bias)
        self.entity_placement_out = None
        if entity_placement_skip:
            # Per latent pixel, placement channels → output channels; zero-initialised like the layer above.
            self.entity_placement_out = nn.Conv2d(self.entity_placement.in_channels, out_channels, 1)
            nn.init.zeros_(self.entity_placement_out.weight)
            nn.init.zeros_(self.entity_placement_out.bias)
        # Beyond the paper: a per-frame convolutional residual on the unpatchified output, reading it and
        # the noisy input, zero-initialised (the model computes exactly as without it at first).
        self.output_refiner = None
        if output_refiner_channels is not None:
            self.output_refiner = GridResidual(2 * out_channels, out_channels, output_refiner_channels, output_refiner_blocks)
        if entity_dim is not None:
            self.entity_motion = EntityMotionTokenizer(motion_channels, entity_dim, motion_frequencies)
            self.entity_text_proj = nn.Linear(text_embed_dim, entity_dim)
            self.entity_slots = nn.Embedding(max_entities, entity_dim)
            self.entity_token_type = nn.Embedding(2, entity_dim)  # 0 appearance p̂, 1 motion m̂
            self.entity_binder = build_binder(binder, entity_dim, binder_heads)
            self.contrastive = ContrastiveHeads(entity_dim, contrastive_dim, contrastive_temperature)

        # 3. Blocks.
        self.transformer_blocks = nn.ModuleList(
            [
                Tora2Block(
                    dim=inner_dim,
                    num_attention_heads=num_attention_heads,
                    attention_head_dim=attention_head_dim,
                    time_embed_dim=time_embed_dim,
                    dropout=dropout,
                    activation_fn=activation_fn,
                    attention_bias=attention_bias,
                    norm_elementwise_affine=norm_elementwise_affine,
                    norm_eps=norm_eps,
                    entity_dim=entity_dim,
                    entity_attention_heads=entity_attention_heads,
                    entity_attention_head_dim=entity_attention_head_dim,
                    block_order=block_order,
                    entity_locality=entity_locality_sigma is not None,
                    entity_references=reference_latent_size is not None,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm_final = nn.LayerNorm(inner_dim, norm_eps, norm_elementwise_affine)

        # 4. Output.
        self.norm_out = AdaLayerNorm(
            embedding_dim=time_embed_dim,
            output_dim=2 * inner_dim,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            chunk_dim=1,
        )
        self.proj_out = nn.Linear(inner_dim, patch_size * patch_size * out_channels)
        self.gradient_checkpointing = False

    # ------------------------------------------------------------------ conditions
    def encode_entities(
        self,
        motion_features: list[torch.Tensor],
        entity_positions: torch.Tensor,
        entity_visible: torch.Tensor | None = None,
        entity_personalization: torch.Tensor | None = None,
        entity_personalization_valid: torch.Tensor | None = None,
        entity_text_embeds: torch.Tensor | None = None,
        entity_text_mask: torch.Tensor | None = None,
        entity_mask: torch.Tensor | None = None,
        entity_reference_latents: torch.Tensor | None = None,
        return_contrastive: bool = False,
    ) -> Tora2Conditions:
        """Per-entity tokens → bound, slot-embedded tokens for the blocks.

        motion_features: the extractor's maps (B·F, Cm, h, w) per level (level 0 is sampled).
        entity_positions (B, E, F, 2) in [0, 1]; entity_visible (B, E, F) bool;
        entity_personalization (B, E, Q, De) p_i; entity_personalization_valid (B, E) bool (False: no
        reference, e.g. dropped for guidance); entity_text_embeds (B, E, Lc, Dtext) with
        entity_text_mask (B, E, Lc) bool; entity_mask (B, E) bool (False: padding entity);
        entity_reference_latents (B, E, C, r, r): each reference through the video VAE (used when the
        model has ``reference_latent_size``; valid where the reference is, as p_i).
        """
        cfg = self.config
        if self.entity_motion is None:
            raise ValueError("this transformer has no Tora2 entity modules (entity_dim=None)")
        batch, num_entities, num_frames = entity_positions.shape[:3]
        if entity_positions.shape[-1] != 2:
            raise ValueError(f"entity_positions must be (B, E, F, 2); got {tuple(entity_positions.shape)}")
        if num_entities > cfg.max_entities:
            raise ValueError(f"at most max_entities={cfg.max_entities} entities; got {num_entities}")
        device = entity_positions.device
        dtype = motion_features[0].dtype
        ones = torch.ones(batch, num_entities, dtype=torch.bool, device=device)
        entity_mask = ones if entity_mask is None else entity_mask.bool()
        visible = torch.ones(batch, num_entities, num_frames, dtype=torch.bool, device=device)
        visible = visible if entity_visible is None else entity_visible.bool()
        if visible.shape != (batch, num_entities, num_frames):
            raise ValueError(f"entity_visible must be ({batch}, {num_entities}, {num_frames}); got {tuple(visible.shape)}")

        level0 = motion_features[0]  # (B·F, Cm, h, w), or (F, Cm, h, w) for a trajectory shared by the batch
        if level0.shape[0] != batch * num_frames:
            level0 = level0.repeat(batch, 1, 1, 1)  # (B·F, Cm, h, w)
        m = self.entity_motion(level0, entity_positions, visible)  # (B, E, F, De)
        num_queries, entity_dim = cfg.num_personalization_tokens, cfg.entity_dim
        if entity_personalization is None:
            p = m.new_zeros(batch, num_entities, num_queries, entity_dim)
            p_present = torch.zeros_like(entity_mask)
        else:
            expected = (batch, num_entities, num_queries, entity_dim)
            if tuple(entity_personalization.shape) != expected:
                raise ValueError(f"entity_personalization must be {expected}; got {tuple(entity_personalization.shape)}")
            p = entity_personalization.to(m.dtype)
            p_present = ones if entity_personalization_valid is None else entity_personalization_valid.bool()
            p = p * p_present[..., None, None].to(p.dtype)
        if entity_text_embeds is None:
            c = m.new_zeros(batch, num_entities, 1, entity_dim)
            c_valid = torch.zeros(batch, num_entities, 1, dtype=torch.bool, device=device)
        else:
            if entity_text_embeds.ndim != 4 or entity_text_embeds.shape[:2] != (batch, num_entities):
                raise ValueError(
                    f"entity_text_embeds must be ({batch}, {num_entities}, Lc, {cfg.text_embed_dim}); "
                    f"got {tuple(entity_text_embeds.shape)}"
                )
            c = self.entity_text_proj(entity_text_embeds.to(m.dtype))  # (B, E, Lc, De)
            c_valid = torch.ones(c.shape[:3], dtype=torch.bool, device=device)
            c_valid = c_valid if entity_text_mask is None else entity_text_mask.bool()

        z_p = z_m = None
        if return_contrastive:
            z_p, z_m = self.contrastive(p, m, visible)  # pre-binding, (B, E, Dc) each

        if self.entity_binder is not None:
            flat = lambda x: rearrange(x, "b e n d -> (b e) n d")  # noqa: E731
            p_valid = p_present[..., None].expand(-1, -1, num_queries)  # (B, E, Q)
            p_b, m_b = self.entity_binder(
                flat(p), flat(m), flat(c),
                rearrange(p_valid, "b e n -> (b e) n"),
                torch.ones(batch * num_entities, num_frames, dtype=torch.bool, device=device),
                rearrange(c_valid, "b e n -> (b e) n"),
            )
            p = rearrange(p_b, "(b e) n d -> b e n d", b=batch)  # (B, E, Q, De)
            m = rearrange(m_b, "(b e) n d -> b e n d", b=batch)  # (B, E, F, De)

        p = p + self.entity_token_type.weight[0]
        m = m + self.entity_token_type.weight[1]
        tokens = torch.cat([p, m], dim=2) + self.entity_slots.weight[:num_entities, None]  # (B, E, Q+F, De)
        # Motion tokens of absent frames stay attendable: they carry the learned "absent" embedding.
        m_valid = torch.ones_like(visible)
        valid = torch.cat([p_present[..., None].expand(-1, -1, num_queries), m_valid], dim=2)  # (B, E, Q+F)
        valid = valid & entity_mask[..., None]
        bias = per_entity_bias = None
        if cfg.entity_locality_sigma is not None:
            token_grid = (num_frames, *level0.shape[-2:])  # (F, h, w)
            per_entity_bias = trajectory_locality_bias(entity_positions, visible, token_grid, cfg.entity_locality_sigma, 1)
            bias = per_entity_bias.repeat_interleave(num_queries + num_frames, dim=2).to(dtype)  # (B, N, E) → (B, N, S)
        conditions = Tora2Conditions(
            entity_tokens=rearrange(tokens, "b e n d -> b (e n) d").to(dtype),  # (B, S, De)
            entity_valid=rearrange(valid, "b e n -> b (e n)"),  # (B, S)
            entity_bias=bias,
            z_p=z_p,
            z_m=z_m,
        )
        if self.entity_reference is not None:
            # No reference latents given means no reference (as a dropped one): only the null token is seen.
            size = cfg.reference_latent_size
            expected = (batch, num_entities, cfg.in_channels, size, size)
            present = ones if entity_personalization_valid is None else entity_personalization_valid.bool()
            if entity_reference_latents is None:
                entity_reference_latents, present = m.new_zeros(expected), torch.zeros_like(present)
            if tuple(entity_reference_latents.shape) != expected:
                raise ValueError(f"entity_reference_latents must be {expected}; got {tuple(entity_reference_latents.shape)}")
            r = self.entity_reference(entity_reference_latents)  # (B, E, R, De)
            r = r + self.entity_slots.weight[:num_entities, None]
            count = r.shape[2]
            r_valid = present & entity_mask  # (B, E): dropped references (guidance, training dropout) are dropped here too
            conditions.reference_tokens = rearrange(r, "b e n d -> b (e n) d").to(dtype)  # (B, E·R, De)
            conditions.reference_valid = r_valid[..., None].expand(-1, -1, count).reshape(batch, -1)  # (B, E·R)
            conditions.reference_bias = per_entity_bias.repeat_interleave(count, dim=2).to(dtype)  # (B, N, E·R)
        return conditions

    def prepare_conditions(
        self,
        video_flow: torch.Tensor | None = None,
        precompute_modulation: bool = False,
        return_contrastive: bool = False,
        **entity_inputs,
    ) -> Tora2Conditions:
        """Run everything timestep-independent once: the trajectory extractor, optionally every
        fuser's γ/β (memory: 2·num_layers·B·N·D values), the entity binding and the placement tokens
        (``entity_placement`` (B, F, Cp, H, W), read when the model has ``entity_placement_channels``)."""
        conditions = Tora2Conditions()
        placement = entity_inputs.pop("entity_placement", None)
        if placement is not None:
            if self.entity_placement is None:
                raise ValueError("entity_placement given but this transformer has no entity_placement_channels")
            expected_c = self.entity_placement.in_channels
            if placement.ndim != 5 or placement.shape[2] != expected_c:
                raise ValueError(f"entity_placement must be (B, F, {expected_c}, H, W); got {tuple(placement.shape)}")
            batch = placement.shape[0]
            frames = rearrange(placement, "b f c h w -> (b f) c h w").to(self.dtype)  # (B·F, Cp, H, W)
            grid = self.entity_placement(frames)  # (B·F, D, h, w)
            conditions.placement_tokens = rearrange(grid, "(b f) d h w -> b (f h w) d", b=batch)  # (B, N, D)
            if self.entity_placement_out is not None:
                skip = self.entity_placement_out(frames)  # (B·F, C, H, W)
                conditions.placement_skip = rearrange(skip, "(b f) c h w -> b f c h w", b=batch)  # (B, F, C, H, W)
        if video_flow is not None:
            if self.traj_extractor is None:
                raise ValueError("this transformer has no trajectory modules (motion_channels=None)")
            expected_c = self.config.motion_in_channels or self.config.in_channels
            if video_flow.ndim != 5 or video_flow.shape[2] != expected_c:
                raise ValueError(f"video_flow must be (B, F, {expected_c}, H, W); got {tuple(video_flow.shape)}")
            features = self.traj_extractor(video_flow.to(self.dtype))  # num_layers × (B·F, Cm, h, w)
            conditions.motion_features = features
            if precompute_modulation:
                num_frames = video_flow.shape[1] // self.config.motion_patch_size_t
                conditions.motion_modulation = [
                    fuser.modulation(feature, num_frames) for fuser, feature in zip(self.fuser, features)
                ]
        if entity_inputs.get("entity_positions") is not None:
            if conditions.motion_features is None:
                raise ValueError("entity inputs need video_flow: motion tokens are read from the motion features")
            entity = self.encode_entities(conditions.motion_features, return_contrastive=return_contrastive, **entity_inputs)
            conditions.entity_tokens, conditions.entity_valid = entity.entity_tokens, entity.entity_valid
            conditions.entity_bias = entity.entity_bias
            conditions.reference_tokens = entity.reference_tokens
            conditions.reference_valid = entity.reference_valid
            conditions.reference_bias = entity.reference_bias
            conditions.z_p, conditions.z_m = entity.z_p, entity.z_m
        return conditions

    # ------------------------------------------------------------------ forward
    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        timestep_cond: torch.Tensor | None = None,
        ofs: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        *,
        video_flow: torch.Tensor | None = None,
        conditions: Tora2Conditions | None = None,
        return_contrastive: bool = False,
        **entity_inputs,
    ):
        """diffusers' CogVideoX signature plus ``video_flow`` (B, F, C, H, W) (the VAE-encoded flow,
        as the official Tora model takes it; batch 1 is shared by the whole batch, which halves the
        motion work and the held γ/β under guidance), the per-entity inputs of ``encode_entities``,
        or precomputed ``conditions`` from ``prepare_conditions``."""
        if hidden_states.ndim != 5 or hidden_states.shape[2] != self.config.in_channels:
            raise ValueError(
                f"hidden_states must be (B, F, {self.config.in_channels}, H, W); got {tuple(hidden_states.shape)}"
            )
        batch, num_frames, _, height, width = hidden_states.shape
        noisy_input = hidden_states  # (B, F, C, H, W): the output refiner reads it
        p = self.config.patch_size
        if height % p or width % p:
            raise ValueError(f"latent height and width must be multiples of patch_size={p}; got {height}×{width}")
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[-1] != self.config.text_embed_dim:
            raise ValueError(
                f"encoder_hidden_states must be (B, L, {self.config.text_embed_dim}); got {tuple(encoder_hidden_states.shape)}"
            )
        if video_flow is not None and (video_flow.shape[0] not in (1, batch) or video_flow.shape[1] != num_frames):
            raise ValueError(
                f"video_flow must be ({batch} or 1, {num_frames}, C, {height}, {width}); got {tuple(video_flow.shape)}"
            )
        if conditions is None:
            conditions = self.prepare_conditions(video_flow, return_contrastive=return_contrastive, **entity_inputs)

        # 1. Time embedding (the sinusoid is float32; cast to the model's dtype).
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)  # (B, Dt)

        # 2. Patch embedding: text and video tokens in one sequence, then split.
        text_length = encoder_hidden_states.shape[1]
        tokens = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))  # (B, L+N, D)
        encoder_hidden_states, hidden_states = tokens[:, :text_length], tokens[:, text_length:]
        token_grid = (num_frames, height // p, width // p)
        if conditions.placement_tokens is not None:
            if conditions.placement_tokens.shape[1:] != hidden_states.shape[1:]:
                raise ValueError(f"entity_placement gives {conditions.placement_tokens.shape[1]} tokens; the video has {hidden_states.shape[1]}")
            hidden_states = hidden_states + conditions.placement_tokens.to(hidden_states.dtype)  # (B, N, D), batch 1 broadcast

        # 3. Blocks.
        for i, block in enumerate(self.transformer_blocks):
            block_args = (
                hidden_states,
                encoder_hidden_states,
                emb,
                image_rotary_emb,
                attention_kwargs,
                self.fuser[i] if self.fuser is not None else None,
                conditions.motion_features[i] if conditions.motion_features is not None else None,
                conditions.motion_modulation[i] if conditions.motion_modulation is not None else None,
                token_grid,
                conditions.entity_tokens,
                conditions.entity_valid,
                conditions.entity_bias,
                None if conditions.reference_tokens is None
                else (conditions.reference_tokens, conditions.reference_valid, conditions.reference_bias),
            )
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states, encoder_hidden_states = self._gradient_checkpointing_func(block, *block_args)
            else:
                hidden_states, encoder_hidden_states = block(*block_args)

        # 4. Output.
        hidden_states = self.norm_final(hidden_states)
        hidden_states = self.norm_out(hidden_states, temb=emb)
        hidden_states = self.proj_out(hidden_states)  # (B, N, p·p·C)

        # 5. Unpatchify.
        output = rearrange(
            hidden_states, "b (f h w) (c ph pw) -> b f c (h ph) (w pw)", f=num_frames, h=height // p, ph=p, pw=p
        )  # (B, F, C, H, W)
        if conditions.placement_skip is not None:
            output = output + conditions.placement_skip.to(output.dtype)  # batch 1 broadcast
        if self.output_refiner is not None:
            frames = rearrange(torch.cat([output, noisy_input.to(output.dtype)], dim=2), "b f c h w -> (b f) c h w")
            residual = self.output_refiner(frames)  # (B·F, C, H, W)
            output = output + rearrange(residual, "(b f) c h w -> b f c h w", f=num_frames)
        if not return_dict:
            return (output,)
        if return_contrastive:
            return Tora2TransformerOutput(sample=output, z_p=conditions.z_p, z_m=conditions.z_m)
        return Transformer2DModelOutput(sample=output)

    # ------------------------------------------------------------------ parts and loading
    @property
    def placement_canvases(self) -> int | None:
        """How many placement canvases the model reads: None (no placement), 1 (every entity on one
        canvas) or max_entities (one per entity slot, ``entity_placement_per_entity``)."""
        if self.entity_placement is None:
            return None
        return self.entity_placement.in_channels // self.config.entity_placement_channels  # as built in __init__

    def adapt_saved_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A saved state dict made to fit this config where a rule says how (training's
        ``model.init_weights``): a one-canvas placement layer becomes the same layer on every entity
        slot, so a per-entity model starts as the one-canvas model on entities that do not overlap
        (the VAE is near-linear there: the canvases sum to the composite)."""
        key = "entity_placement.weight"
        saved, own = state.get(key), self.entity_placement
        canvases = self.placement_canvases or 1
        if saved is None or own is None or canvases == 1 or saved.shape[1] * canvases != own.in_channels:
            return state
        return {**state, key: saved.repeat(1, canvases, 1, 1)}  # (D, Cp, p, p) → (D, S·Cp, p, p)

    @staticmethod
    def part_of(key: str) -> str:
        """Which part a state-dict key belongs to: "cogvideox", "tora" or "tora2"."""
        if key.startswith(TORA_PREFIXES):
            return "tora"
        if key.startswith(TORA2_PREFIXES) or any(part in key for part in TORA2_BLOCK_PARTS):
            return "tora2"
        return "cogvideox"

    def tora2_parameters(self):
        return [p for name, p in self.named_parameters() if self.part_of(name) == "tora2"]

    def load_tora_state_dict(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Load a CogVideoX or Tora transformer state dict: every given key must match a key here with
        the same shape (strict); the keys left out must all be Tora2 additions (or Tora parts, when
        loading plain CogVideoX), which keep their identity init. Returns the keys left at init."""
        own = self.state_dict()
        unexpected = [k for k in state_dict if k not in own]
        mismatched = [k for k in state_dict if k in own and tuple(own[k].shape) != tuple(state_dict[k].shape)]
        if unexpected or mismatched:
            detail = (unexpected + [f"{k} {tuple(state_dict[k].shape)}≠{tuple(own[k].shape)}" for k in mismatched])[:5]
            raise ValueError(f"state dict does not fit this config: {'; '.join(detail)}")
        missing = [k for k in own if k not in state_dict]
        given_parts = {self.part_of(k) for k in state_dict}
        allowed = {"tora2"} | ({"tora"} if "tora" not in given_parts else set())
        wrong = [k for k in missing if self.part_of(k) not in allowed]
        if wrong:
            raise ValueError(f"state dict is missing {len(wrong)} base key(s), e.g. {wrong[:3]}")
        self.load_state_dict(state_dict, strict=False)
        return missing
