"""A patch discriminator for the VAE stage's adversarial term (``loss.adversarial``).

Per-pixel L1/L2 make a decoder draw the mean of what its latents leave uncertain: a small sprite
comes back as a soft blob, which the evaluation's template-matching tracker then loses. A
discriminator that judges patches of single frames as real or decoded rewards a decoder for drawing
sharp, plausible detail instead (the recipe of the Stable Diffusion and CogVideoX autoencoders:
reconstruction + a patch GAN, hinge losses). It is only a training aid: nothing of it is saved
in the pipeline.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class PatchDiscriminator(nn.Module):
    """Video (B, 3, F, H, W) in [−1, 1] → realness logits (B·F, 1, H/2ⁿ, W/2ⁿ), one per patch of each frame.

    ``channels``: the widths of the n stride-2 convolutions (4×4 kernels); each logit sees a patch of
    about 2ⁿ⁺¹ + 6 pixels, so with the default three a 64×64 frame gives 8×8 logits over ≈ 22 px
    patches — a sprite's size in the embedded model's frames.
    """

    def __init__(self, channels: tuple[int, ...] | list[int] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for index, out in enumerate(channels):
            layers.append(nn.Conv2d(width, out, 4, stride=2, padding=1))
            if index > 0:  # no normalisation on the first layer (the pixels themselves)
                layers.append(nn.GroupNorm(min(8, out), out))
            layers.append(nn.LeakyReLU(0.2))
            width = out
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        frames = rearrange(video, "b c f h w -> (b f) c h w")  # (B·F, 3, H, W)
        return self.net(frames)  # (B·F, 1, H/2ⁿ, W/2ⁿ)


def discriminator_loss(discriminator: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of ``discriminator`` on real and decoded videos (B, 3, F, H, W); ``fake`` is detached here."""
    real_logits = discriminator(real)
    fake_logits = discriminator(fake.detach())
    return torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean()


def generator_loss(discriminator: PatchDiscriminator, fake: torch.Tensor) -> torch.Tensor:
    """The decoder's adversarial term: minus the mean realness of its decoded video (B, 3, F, H, W)."""
    return -discriminator(fake).mean()


class Adversary:
    """A discriminator and its optimizer (Adam, betas (0.5, 0.9)) for one training run; never saved."""

    def __init__(self, channels: tuple[int, ...] | list[int], learning_rate: float, seed: int):
        with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the caller's random state alone
            torch.manual_seed(seed)
            self.discriminator = PatchDiscriminator(channels)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=learning_rate, betas=(0.5, 0.9))

    def generator_term(self, recon: torch.Tensor) -> torch.Tensor:
        """The decoder's adversarial term on its decoded batch (B, 3, F, H, W); no gradient reaches the discriminator."""
        self.discriminator.requires_grad_(False)
        term = generator_loss(self.discriminator, recon)
        self.discriminator.requires_grad_(True)
        return term

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One discriminator update on real and decoded batches (B, 3, F, H, W); its hinge loss."""
        loss = discriminator_loss(self.discriminator, real, fake)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())
