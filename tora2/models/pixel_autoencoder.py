"""A lossless "autoencoder" for pixel-space diffusion: space-to-depth with per-channel normalisation.

``PixelShuffleAutoencoder`` stands where a pipeline's ``vae`` stands and answers the same calls as
diffusers' ``AutoencoderKLCogVideoX`` — ``encode(x).latent_dist.mode()/.sample()``,
``decode(z).sample``, ``config.latent_channels``, ``config.scaling_factor``,
``config.temporal_compression_ratio`` — so the pipeline and the trainer use it through config fields
alone. Encoding folds each r × r block of pixels into channels (r = ``spatial_compression_ratio``)
and normalises every channel by the data's mean and standard deviation (buffers, saved as the
model's weights); decoding is the exact inverse. Nothing is lost, so the autoencoder ceiling of
``tora2 eval --reconstruct`` equals the raw renders: the tiny CogVideoX VAE it replaces in the
embedded model lost a quarter of each sprite's colour fidelity and capped TrajError at 8.2 % of the
width (docs/results.md). The price is a wider latent: 3·r² channels instead of 16.

With ``latent_channels`` below 3·r² it is a linear (PCA) autoencoder instead: ``set_statistics`` also
fits the principal directions of the normalised blocks and the latent keeps the leading
``latent_channels`` of them (a buffer ``basis``, saved with the statistics). Decoding maps back
along the same directions, so the round trip is the best linear one of that width on the fitting
data, without training. The latent is the lossless one rotated and truncated, so its variance is
mostly in the first few components and the diffusion noise drowns a sprite's detail (the small
trailing components) before its coarse shape. ``whiten_components`` divides each kept component by
its standard deviation instead, so that every component has the same signal-to-noise ratio at every
timestep, as in a trained VAE's latent; on the embedded model that trained worse (saturated noise
blocks; docs/results.md, "Linear latents"), so it is off by default. Why fewer channels at all: a
token of the 128-wide tiny
transformer is 2×2 latent pixels, 4 · latent_channels values, and 192 (lossless) proved too many for
it, while 36 components keep the held-out round trip within the ceiling bar (docs/results.md).

With ``decoder_channels`` > 0 decoding is learned on top of that: a small per-frame convolutional
network on the latent grid (``GridResidual``) adds a residual to the linear decode's normalised
blocks. Its output layer starts at zero, so a new decoder decodes exactly as the linear one, and
the encoder (statistics and basis) is never trained: a denoiser trained on the linear latents keeps
working. It is trained by ``tora2.training.vae`` with ``decoder_only`` (configs/train/
embedded-pca-decoder.yaml) to draw clean sprites from what a denoiser leaves in its latents, which
a linear decode shows as coloured noise (docs/results.md, "Linear latents").

With ``encoder_channels`` > 0 the code itself is learned as well: a ``GridResidual`` from the
normalised blocks to the latent grid is added to the principal projection, zero at init, so a new
encoder starts as the linear code (which meets the ceiling bar) and ``tora2.training.vae`` trains it
and the decoder together (``decoder_only: false``), for example to make the latent robust to the
errors a denoiser leaves (``loss.latent_noise``). A denoiser trained on the linear latents does not
carry over to a trained code.

Shapes: video (B, 3, F, H, W) ↔ blocks (B, 3·r², F, H/r, W/r) ↔ latents (B, C, F, H/r, W/r), C =
``latent_channels``; time is never compressed.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from einops import rearrange
from torch import nn

from tora2.errors import InputError
from tora2.models.grid import GridResidual


class PixelShuffleAutoencoder(ModelMixin, ConfigMixin):
    """Pixels ↔ normalised space-to-depth latents; exact inverse, no learned layers.

    ``in_channels``: image channels (3); ``spatial_compression_ratio``: r, the block side folded into
    channels; ``latent_channels``: ``in_channels · r²`` (None: lossless) or fewer (the leading principal
    components, fitted by ``set_statistics``); ``scaling_factor``: multiplied
    into latents by the pipeline as for any VAE (1: the per-channel statistics already give unit
    variance); ``sample_height`` / ``sample_width``: the training frame size (documentation, as in
    the CogVideoX VAE config).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        spatial_compression_ratio: int = 4,
        latent_channels: int | None = None,
        temporal_compression_ratio: int = 1,
        scaling_factor: float = 1.0,
        sample_height: int = 64,
        sample_width: int = 64,
        whiten_components: bool = False,
        decoder_channels: int = 0,
        decoder_blocks: int = 2,
        encoder_channels: int = 0,
        encoder_blocks: int = 2,
    ):
        super().__init__()
        r = int(spatial_compression_ratio)
        if r < 1:
            raise InputError(f"pixel autoencoder: spatial_compression_ratio={r} must be ≥ 1")
        expected = in_channels * r * r
        if latent_channels is None:
            self.register_to_config(latent_channels=expected)
        elif not 1 <= latent_channels <= expected:
            raise InputError(f"pixel autoencoder: latent_channels={latent_channels} must be 1 … in_channels · r² = {expected} "
                             f"({expected}: lossless; fewer: that many principal components)")
        if temporal_compression_ratio != 1:
            raise InputError(f"pixel autoencoder: temporal_compression_ratio={temporal_compression_ratio}; it never compresses time, use 1")
        # Per latent channel, set from data by set_statistics (identity until then).
        self.register_buffer("channel_mean", torch.zeros(expected))
        self.register_buffer("channel_std", torch.ones(expected))
        # Principal directions of the normalised blocks, leading first (leading unit vectors until fitted);
        # None when lossless, so the weights of lossless autoencoders saved before it stay loadable.
        kept = expected if latent_channels is None else latent_channels
        self.register_buffer("basis", torch.eye(expected)[:, :kept].clone() if kept < expected else None)
        if whiten_components and self.basis is None:
            raise InputError("pixel autoencoder: whiten_components needs latent_channels below in_channels · r² "
                             f"(= {expected}); the lossless latent has no components to whiten")
        # Standard deviation of each kept component (ones until fitted), with whiten_components.
        self.register_buffer("component_std", torch.ones(kept) if whiten_components else None)
        if min(decoder_channels, decoder_blocks, encoder_channels, encoder_blocks) < 0:
            raise InputError(f"pixel autoencoder: decoder_channels={decoder_channels}, decoder_blocks={decoder_blocks}, "
                             f"encoder_channels={encoder_channels}, encoder_blocks={encoder_blocks} must be ≥ 0 "
                             "(channels 0: the linear code, nothing learned)")
        if encoder_channels and self.basis is None:
            raise InputError("pixel autoencoder: encoder_channels needs latent_channels below in_channels · r² "
                             f"(= {expected}); the lossless latent has no code to learn")
        self.decoder = GridResidual(kept, expected, decoder_channels, decoder_blocks) if decoder_channels else None
        self.encoder = GridResidual(expected, kept, encoder_channels, encoder_blocks) if encoder_channels else None
        self.post_quant_conv = None  # as in diffusers' VAEs: the decoder is all there is to decoding

    # (B, C, F, H, W) ↔ (B, C·r², F, H/r, W/r)
    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.spatial_compression_ratio
        if x.shape[-2] % r or x.shape[-1] % r:
            raise InputError(f"pixel autoencoder: frame size {x.shape[-2]}×{x.shape[-1]} is not a multiple of {r}")
        return rearrange(x, "b c f (h p) (w s) -> b (c p s) f h w", p=r, s=r)

    def _unfold(self, z: torch.Tensor) -> torch.Tensor:
        r = self.config.spatial_compression_ratio
        return rearrange(z, "b (c p s) f h w -> b c f (h p) (w s)", p=r, s=r)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        return (self.channel_mean.to(like).view(shape), self.channel_std.to(like).view(shape))

    def _component_scale(self, like: torch.Tensor) -> torch.Tensor | float:
        return 1.0 if self.component_std is None else self.component_std.to(like).view(1, -1, 1, 1, 1)

    def _project(self, blocks: torch.Tensor) -> torch.Tensor:
        if self.basis is None:
            return blocks
        z = torch.einsum("bnfhw,nk->bkfhw", blocks, self.basis.to(blocks))  # (B, latent_channels, F, h, w)
        return z / self._component_scale(z)

    def _unproject(self, z: torch.Tensor) -> torch.Tensor:
        if self.basis is None:
            return z
        return torch.einsum("bkfhw,nk->bnfhw", z * self._component_scale(z), self.basis.to(z))  # (B, C·r², F, h, w)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """(B, C, F, H, W) in [−1, 1] → posterior with mean (B, latent_channels, F, H/r, W/r) and zero variance."""
        mean, std = self._stats(x)
        blocks = (self._fold(x) - mean) / std  # (B, C·r², F, h, w)
        z = self._project(blocks)  # (B, latent_channels, F, h, w)
        if self.encoder is not None:
            frames = rearrange(blocks, "b n f h w -> (b f) n h w")
            residual = self.encoder(frames.to(self.encoder.conv_in.weight.dtype))  # (B·F, latent_channels, h, w)
            z = z + rearrange(residual, "(b f) k h w -> b k f h w", b=x.shape[0]).to(z)
        posterior = DiagonalGaussianDistribution(torch.cat([z, torch.zeros_like(z)], dim=1), deterministic=True)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """(B, latent_channels, F, h, w) → (B, C, F, h·r, w·r): the exact inverse of ``encode`` when lossless,
        else the projection back along the kept directions; plus the learned decoder's residual, if any."""
        mean, std = self._stats(z)
        blocks = self._unproject(z)  # (B, C·r², F, h, w), normalised
        if self.decoder is not None:
            frames = rearrange(z, "b k f h w -> (b f) k h w")
            residual = self.decoder(frames.to(self.decoder.conv_in.weight.dtype))  # (B·F, C·r², h, w)
            blocks = blocks + rearrange(residual, "(b f) n h w -> b n f h w", b=z.shape[0]).to(blocks)
        x = self._unfold(blocks * std + mean)  # (B, C, F, H, W)
        return DecoderOutput(sample=x) if return_dict else (x,)

    @torch.no_grad()
    def set_statistics(self, videos: torch.Tensor, min_std: float = 1e-2) -> None:
        """Per-channel mean and standard deviation of the folded ``videos`` (B, C, F, H, W), and, when
        ``latent_channels`` is below C·r², the leading principal directions of the normalised blocks."""
        z = self._fold(videos.float())  # (B, C·r², F, h, w)
        flat = z.transpose(0, 1).reshape(z.shape[1], -1).double()  # (C·r², B·F·h·w)
        self.channel_mean.copy_(flat.mean(dim=1))
        self.channel_std.copy_(flat.std(dim=1).clamp_min(min_std))
        if self.basis is not None:
            normalised = (flat - self.channel_mean.double()[:, None]) / self.channel_std.double()[:, None]
            values, vectors = torch.linalg.eigh(normalised @ normalised.T / normalised.shape[1])  # ascending
            leading = vectors[:, values.argsort(descending=True)[: self.basis.shape[1]]]  # (C·r², latent_channels)
            leading = leading * torch.where(leading.sum(dim=0) < 0, -1.0, 1.0).to(leading)  # a fixed sign per direction
            self.basis.copy_(leading)
            if self.component_std is not None:
                self.component_std.copy_((leading.T @ normalised).std(dim=1).clamp_min(min_std))
