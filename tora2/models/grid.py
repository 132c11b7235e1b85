"""``GridResidual``: a small per-frame convolutional residual on a latent grid, zero at init.

Used where a learned correction is added to a linear map without changing it at first: the pixel
autoencoder's learned decoder and encoder (``tora2/models/pixel_autoencoder.py``) and the
transformer's optional output refiner (``output_refiner_channels``, ``tora2/models/transformer_tora2.py``).
"""

from __future__ import annotations

import torch
from torch import nn


class GridResidual(nn.Module):
    """A residual on the latent grid, one frame at a time: (N, C_in, h, w) → (N, C_out, h, w) by a 3×3
    convolution in, ``num_blocks`` pre-norm residual blocks of two 3×3 convolutions and a
    zero-initialised 3×3 convolution out (so it adds nothing at first). The decoder's maps latents to
    normalised blocks (C_in = latent channels, C_out = 3·r²); the encoder's, blocks to latents; the
    transformer's refiner, its output and noisy input (2·C) to a correction of the output (C)."""

    def __init__(self, in_channels: int, out_channels: int, channels: int, num_blocks: int):
        super().__init__()
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                          nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))
            for _ in range(num_blocks))
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)  # (N, channels, h, w)
        for block in self.blocks:
            h = h + block(h)
        return self.conv_out(h)  # (N, C_out, h, w)
