"""Tora's trajectory modules: the TrajectoryExtractor and the motion-guidance fuser (MGF).

Attribute names are a file format: they reproduce the official Tora checkpoint keys
(``traj_extractor.conv_in``, ``traj_extractor.body.{k}.{bn1,block1,bn2,block2}``,
``fuser.{i}.flow_{gamma,beta}_{spatial,temporal}``, ``fuser.{i}.flow_cond_norm``) so a public Tora
transformer loads with every key matched. The constants Tora hard-coded are constructor arguments.

Glossary: B batch, F latent frames, C flow-latent channels, Cm motion channels, D hidden,
H/W latent size, h/w token grid (H / patch, W / patch).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange


class MotionResnetBlock(nn.Module):
    """Pre-activation residual block (BN → ReLU → conv, twice) at a fixed width (Tora's ``sk=True``)."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        padding = kernel_size // 2
        self.bn1 = nn.BatchNorm2d(channels)
        self.block1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.block2 = nn.Conv2d(channels, channels, kernel_size, 1, padding)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block1(self.act(self.bn1(x)))
        h = self.block2(self.act(self.bn2(h)))
        return x + h


class TrajectoryExtractor(nn.Module):
    """Flow latents → one motion feature map per transformer block.

    The flow latents are patchified exactly like the video latents (``patch_size_t`` × ``patch_size`` ×
    ``patch_size``), so every feature map lines up with the video token grid.
    """

    def __init__(
        self,
        in_channels: int = 16,
        channels: int = 128,
        num_levels: int = 42,
        blocks_per_level: int = 2,
        patch_size: int = 2,
        patch_size_t: int = 1,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.patch_size = (patch_size_t, patch_size, patch_size)
        self.num_levels = num_levels
        self.blocks_per_level = blocks_per_level
        self.conv_in = nn.Conv2d(in_channels * patch_size_t * patch_size * patch_size, channels, 3, 1, 1)
        self.body = nn.ModuleList(
            [MotionResnetBlock(channels, kernel_size) for _ in range(num_levels * blocks_per_level)]
        )
        for module in self.modules():  # Tora's init: He-normal convs, zero biases
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, video_flow: torch.Tensor) -> list[torch.Tensor]:
        """video_flow (B, F, C, H, W) → ``num_levels`` maps of shape (B·F', Cm, h, w)."""
        pt, ph, pw = self.patch_size
        f, h, w = video_flow.shape[1], video_flow.shape[3], video_flow.shape[4]
        # Pad up to whole patches on the far side, as Tora does.
        pad = (0, (-w) % pw, 0, (-h) % ph, 0, 0, 0, (-f) % pt)
        x = torch.nn.functional.pad(video_flow, pad) if any(pad) else video_flow
        x = rearrange(
            x, "b (f pt) c (h ph) (w pw) -> (b f) (c pt ph pw) h w", pt=pt, ph=ph, pw=pw
        )  # (B·F', C·pt·ph·pw, h, w)
        x = self.conv_in(x)  # (B·F', Cm, h, w)
        features = []
        for level in range(self.num_levels):
            for j in range(self.blocks_per_level):
                x = self.body[level * self.blocks_per_level + j](x)
            features.append(x)
        return features


class FloatGroupNorm(nn.GroupNorm):
    """GroupNorm computed in the parameters' dtype (float32 under mixed precision), as Tora does.

    The input is made contiguous first: the block's token→map rearrange yields a channels-last view,
    and CPU torch 2.13's GroupNorm backward with a trained weight segfaults on that layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype).contiguous()).to(x.dtype)


class MotionGuidanceFuser(nn.Module):
    """Tora's MGF: h ← h + GroupNorm(h)·γ + β, with γ and β from the motion features.

    γ and β depend only on the trajectory, never on the timestep, so ``modulation`` can be computed
    once per generation and ``apply`` reused at every step.
    """

    def __init__(self, motion_channels: int = 128, dim: int = 3072, norm_groups: int = 32, kernel_size: int = 3):
        super().__init__()
        hidden = dim // 4
        self.flow_gamma_spatial = nn.Conv2d(motion_channels, hidden, 3, padding=1)
        self.flow_gamma_temporal = nn.Conv1d(hidden, dim, kernel_size, padding=kernel_size // 2, padding_mode="replicate")
        self.flow_beta_spatial = nn.Conv2d(motion_channels, hidden, 3, padding=1)
        self.flow_beta_temporal = nn.Conv1d(hidden, dim, kernel_size, padding=kernel_size // 2, padding_mode="replicate")
        self.flow_cond_norm = FloatGroupNorm(norm_groups, dim)
        # Zero temporal convs: a fresh fuser leaves h unchanged.
        for conv in (self.flow_gamma_temporal, self.flow_beta_temporal):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _temporal(self, spatial: torch.Tensor, temporal: nn.Conv1d, num_frames: int) -> torch.Tensor:
        h, w = spatial.shape[-2:]
        x = rearrange(spatial, "(b f) c h w -> (b h w) c f", f=num_frames)  # (B·h·w, D/4, F)
        x = temporal(x)  # (B·h·w, D, F)
        return rearrange(x, "(b h w) c f -> (b f) c h w", h=h, w=w)  # (B·F, D, h, w)

    def modulation(self, motion: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """motion (B·F, Cm, h, w) → γ, β each (B·F, D, h, w)."""
        gamma = self._temporal(self.flow_gamma_spatial(motion), self.flow_gamma_temporal, num_frames)
        beta = self._temporal(self.flow_beta_spatial(motion), self.flow_beta_temporal, num_frames)
        return gamma, beta

    def apply(self, hidden: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """hidden (B·F, D, h, w), γ/β (B·F, D, h, w) or (F, D, h, w) for one trajectory shared by the
        whole batch (e.g. both guidance halves), broadcast without copying → (B·F, D, h, w)."""
        normed = self.flow_cond_norm(hidden)
        if gamma.shape[0] == hidden.shape[0]:
            return hidden + normed * gamma + beta
        num_frames = gamma.shape[0]
        per_sample = lambda x: x.unflatten(0, (-1, num_frames))  # noqa: E731  (B, F, D, h, w)
        out = per_sample(hidden) + per_sample(normed) * gamma + beta
        return out.flatten(0, 1)

    def forward(self, hidden: torch.Tensor, motion: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.apply(hidden, *self.modulation(motion, num_frames))
