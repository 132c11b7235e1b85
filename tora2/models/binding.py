"""Tora2's entity binding: motion tokens m_i, the gated self-attention binder, the per-block entity
cross-attention, and the contrastive projection heads.

Every module here that writes into the video path is an exact identity at init (tanh(α) gates with
α = 0, zero-initialised output projections).

Glossary: B batch, E entities, F latent frames, Cm motion channels, Q personalization tokens (l_p),
L entity text tokens, S entity tokens injected per sample, N video tokens, D hidden, De entity width,
C latent channels, r reference latent side, R reference tokens per entity.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from einops import rearrange

BINDERS = ("gated_attention", "linear", "none")


def fourier_features(values: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """(..., V) → (..., V + 2·V·K): the values and their sin/cos at frequencies 2^k·π, k < K."""
    freqs = (2.0 ** torch.arange(num_frequencies, device=values.device, dtype=values.dtype)) * math.pi
    angles = values[..., None] * freqs  # (..., V, K)
    return torch.cat([values, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)


class EntityMotionTokenizer(nn.Module):
    """Per entity and latent frame: the first motion-feature level sampled at the entity's position,
    plus a Fourier embedding of (x, y, t, dx, dy), projected to the entity width → m_i (F × De)."""

    def __init__(self, motion_channels: int, entity_dim: int, num_frequencies: int = 6):
        super().__init__()
        self.num_frequencies = num_frequencies
        in_dim = motion_channels + 5 * (1 + 2 * num_frequencies)
        self.proj = nn.Sequential(nn.Linear(in_dim, entity_dim), nn.SiLU(), nn.Linear(entity_dim, entity_dim))
        self.absent = nn.Parameter(torch.zeros(entity_dim))  # frames where the entity is not visible

    def forward(self, features: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """features (B·F, Cm, h, w), positions (B, E, F, 2) in [0, 1], visible (B, E, F) → (B, E, F, De)."""
        batch, num_entities, num_frames, _ = positions.shape
        grid = rearrange(positions * 2 - 1, "b e f xy -> (b f) e 1 xy").to(features.dtype)  # (B·F, E, 1, 2)
        sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
        sampled = rearrange(sampled, "(b f) c e 1 -> b e f c", b=batch)  # (B, E, F, Cm)
        displacement = torch.diff(positions, dim=2, prepend=positions[:, :, :1])  # (B, E, F, 2), zero at t=0
        time = torch.linspace(0, 1, num_frames, device=positions.device, dtype=positions.dtype)
        time = time.view(1, 1, num_frames, 1).expand(batch, num_entities, num_frames, 1)
        geometry = torch.cat([positions, time, displacement], dim=-1)  # (B, E, F, 5)
        geometry = fourier_features(geometry, self.num_frequencies).to(sampled.dtype)
        tokens = self.proj(torch.cat([sampled, geometry], dim=-1))  # (B, E, F, De)
        return torch.where(visible[..., None], tokens, self.absent.to(tokens.dtype))


class ReferenceLatentTokenizer(nn.Module):
    """An entity's reference image as the video VAE encodes it → its patches as tokens r_i.

    The same 16-channel code the denoiser writes, so the entity attention can carry colour and shape
    from the reference to every frame directly, not only through the pooled DPE tokens p_i.
    """

    def __init__(self, latent_channels: int, patch_size: int, latent_size: int, entity_dim: int):
        super().__init__()
        if latent_size % patch_size:
            raise ValueError(f"reference_latent_size must be a multiple of patch_size={patch_size}; got {latent_size}")
        self.patch_size = patch_size
        self.proj = nn.Linear(latent_channels * patch_size**2, entity_dim)
        self.position = nn.Parameter(torch.randn((latent_size // patch_size) ** 2, entity_dim) * 0.02)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, E, C, r, r) → (B, E, R, De), R = (r / patch_size)²."""
        p = self.patch_size
        patches = rearrange(latents, "b e c (h ph) (w pw) -> b e (h w) (c ph pw)", ph=p, pw=p)  # (B, E, R, C·p²)
        return self.proj(patches.to(self.proj.weight.dtype)) + self.position


class GatedSelfAttention(nn.Module):
    """Binds each entity's appearance p_i with its motion m_i and text c_i (weights shared across entities).

    p ← p + tanh(α_p)·Attn_p,  m ← m + tanh(α_m)·Attn_m, over concat(p, m, c); c is context only.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.alpha_p = nn.Parameter(torch.zeros(1))
        self.alpha_m = nn.Parameter(torch.zeros(1))

    def forward(self, p, m, c, p_valid, m_valid, c_valid):
        """p (N, Q, De), m (N, F, De), c (N, L, De) + validity masks (N, ·) bool → bound p, m."""
        q_len, f_len = p.shape[1], m.shape[1]
        tokens = self.norm(torch.cat([p, m, c], dim=1))  # (N, Q+F+L, De)
        valid = torch.cat([p_valid, m_valid, c_valid], dim=1)  # (N, Q+F+L)
        valid = valid | ~valid.any(dim=1, keepdim=True)  # an all-padding row attends everywhere (no NaN)
        out, _ = self.attn(tokens, tokens, tokens, key_padding_mask=~valid, need_weights=False)
        p = p + torch.tanh(self.alpha_p) * out[:, :q_len]
        m = m + torch.tanh(self.alpha_m) * out[:, q_len : q_len + f_len]
        return p, m


class LinearBinding(nn.Module):
    """Ablation ("linear-projection binding"): p and m each get a gated linear map of the pooled others."""

    def __init__(self, dim: int):
        super().__init__()
        self.to_p = nn.Linear(2 * dim, dim)
        self.to_m = nn.Linear(2 * dim, dim)
        self.alpha_p = nn.Parameter(torch.zeros(1))
        self.alpha_m = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _pool(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights = valid.to(x.dtype)[..., None]
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1)  # (N, De)

    def forward(self, p, m, c, p_valid, m_valid, c_valid):
        pooled_p, pooled_m, pooled_c = self._pool(p, p_valid), self._pool(m, m_valid), self._pool(c, c_valid)
        p = p + torch.tanh(self.alpha_p) * self.to_p(torch.cat([pooled_m, pooled_c], -1))[:, None]
        m = m + torch.tanh(self.alpha_m) * self.to_m(torch.cat([pooled_p, pooled_c], -1))[:, None]
        return p, m


def build_binder(kind: str, dim: int, num_heads: int) -> nn.Module | None:
    if kind == "gated_attention":
        return GatedSelfAttention(dim, num_heads)
    if kind == "linear":
        return LinearBinding(dim)
    if kind == "none":
        return None
    raise ValueError(f"binder must be one of {', '.join(BINDERS)}; got {kind!r}")


class EntityCrossAttention(nn.Module):
    """Video tokens attend to all entities' bound tokens; zero-init output, timestep-dependent gate.

    With ``locality=True`` the attention also takes an additive trajectory-located bias (video tokens
    near entity i's position at their frame favour entity i's tokens; see ``trajectory_locality_bias``)
    and a learned null token at bias 0, which tokens far from every entity attend to instead.
    Without the null token the softmax would hand a lone entity's tokens to the whole frame.
    """

    def __init__(
        self,
        dim: int,
        entity_dim: int,
        num_heads: int,
        head_dim: int,
        time_embed_dim: int,
        eps: float = 1e-5,
        locality: bool = False,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.attn = Attention(
            query_dim=dim,
            cross_attention_dim=entity_dim,
            heads=num_heads,
            dim_head=head_dim,
            qk_norm="layer_norm",
            eps=1e-6,
            bias=True,
            out_bias=True,
        )
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)
        self.gate = nn.Linear(time_embed_dim, dim)  # gate = 1 + Linear(SiLU(temb)), zero-init
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.null_token = None
        if locality:
            self.null_token = nn.Parameter(torch.randn(entity_dim) * 0.02)
            self.locality_scale = nn.Parameter(torch.ones(1))  # multiplies the bias; learned

    def _local_attention(self, hidden: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor, bias: torch.Tensor):
        """hidden (B, N, D) normed, tokens (B, S, De), valid (B, S), bias (B, N, S) → (B, N, D)."""
        attn, batch = self.attn, hidden.shape[0]
        null = self.null_token.to(tokens.dtype).expand(batch, 1, -1)
        tokens = torch.cat([tokens, null], dim=1)  # (B, S+1, De)
        bias = F.pad(bias.to(hidden.dtype) * self.locality_scale.to(hidden.dtype), (0, 1))  # (B, N, S+1), null at 0
        valid = torch.cat([valid, valid.new_ones(batch, 1)], dim=1)  # (B, S+1)
        bias = bias.masked_fill(~valid[:, None, :], float("-inf"))[:, None]  # (B, 1, N, S+1)
        split = lambda x: rearrange(x, "b n (h d) -> b h n d", h=attn.heads)  # noqa: E731
        q, k, v = split(attn.to_q(hidden)), split(attn.to_k(tokens)), split(attn.to_v(tokens))
        q, k = attn.norm_q(q), attn.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, N, d)
        return attn.to_out[1](attn.to_out[0](rearrange(out, "b h n d -> b n (h d)")))

    def forward(
        self,
        hidden: torch.Tensor,
        temb: torch.Tensor,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden (B, N, D), temb (B, Dt), tokens (B, S, De), valid (B, S) bool, bias (B, N, S) → (B, N, D)."""
        any_valid = valid.any(dim=1)  # (B,)
        if self.null_token is not None:
            if bias is None:
                raise ValueError("this entity attention is trajectory-located: it needs the locality bias")
            out = self._local_attention(self.norm(hidden), tokens, valid, bias)
        else:
            mask = (valid | ~any_valid[:, None])[:, None, :]  # (B, 1, S); all-padding rows attend everywhere
            out = self.attn(self.norm(hidden), encoder_hidden_states=tokens, attention_mask=mask)  # (B, N, D)
        gate = 1 + self.gate(F.silu(temb))[:, None, :]  # (B, 1, D)
        return hidden + gate * out * any_valid[:, None, None].to(out.dtype)


def trajectory_locality_bias(
    positions: torch.Tensor, visible: torch.Tensor, token_grid: tuple[int, int, int], sigma: float, tokens_per_entity: int
) -> torch.Tensor:
    """The trajectory-located attention bias: −d²/(2σ²) between each video token's centre and each
    entity's position in that token's latent frame, d and σ in units of the frame width; frames where
    the entity is hidden get the floor (−50).

    positions (B, E, F, 2) in [0, 1] (x, y), visible (B, E, F) bool, token_grid (F, h, w)
    → (B, N, S) with N = F·h·w and S = E·tokens_per_entity (each entity's tokens share its bias).
    """
    floor = -50.0
    num_frames, h, w = token_grid
    if positions.shape[2] != num_frames:
        raise ValueError(f"entity_positions have {positions.shape[2]} frames; the video has {num_frames} latent frames")
    ys = (torch.arange(h, device=positions.device, dtype=positions.dtype) + 0.5) / h
    xs = (torch.arange(w, device=positions.device, dtype=positions.dtype) + 0.5) / w
    dx = xs.view(1, 1, 1, 1, w) - positions[..., 0, None, None]  # (B, E, F, 1, w)
    dy = (ys.view(1, 1, 1, h, 1) - positions[..., 1, None, None]) * (h / w)  # (B, E, F, h, 1), width units
    bias = (-(dx**2 + dy**2) / (2 * sigma**2)).clamp(min=floor)  # (B, E, F, h, w)
    bias = bias.masked_fill(~visible[..., None, None], floor)
    bias = rearrange(bias, "b e f h w -> b (f h w) e")  # (B, N, E)
    return bias.repeat_interleave(tokens_per_entity, dim=2)  # (B, N, S)


class ContrastiveHeads(nn.Module):
    """Mean-pooled pre-binding p_i and m_i → L2-normalised embeddings, plus the learnable temperature."""

    def __init__(self, entity_dim: int, proj_dim: int, temperature: float = 0.07):
        super().__init__()
        self.proj_p = nn.Sequential(nn.Linear(entity_dim, entity_dim), nn.GELU(), nn.Linear(entity_dim, proj_dim))
        self.proj_m = nn.Sequential(nn.Linear(entity_dim, entity_dim), nn.GELU(), nn.Linear(entity_dim, proj_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self, p: torch.Tensor, m: torch.Tensor, m_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p (B, E, Q, De), m (B, E, F, De), m_valid (B, E, F) → z_p, z_m each (B, E, Dc)."""
        weights = m_valid.to(m.dtype)[..., None]
        pooled_m = (m * weights).sum(2) / weights.sum(2).clamp(min=1)  # (B, E, De)
        z_p = F.normalize(self.proj_p(p.mean(dim=2)), dim=-1)  # (B, E, Dc)
        z_m = F.normalize(self.proj_m(pooled_m), dim=-1)  # (B, E, Dc)
        return z_p, z_m
