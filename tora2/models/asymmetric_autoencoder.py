"""A CogVideoX video VAE whose decoder is wider (or deeper) than its encoder.

``AsymmetricCogVideoXVAE`` is diffusers' ``AutoencoderKLCogVideoX`` with two more config fields,
``decoder_block_out_channels`` and ``decoder_layers_per_block`` (None: as the encoder), so a
trained encoder — and with it the latent space a transformer was trained on — can be kept while
only the decoder grows. It saves and loads through the diffusers layout like its parent (the
pipeline's ``model_index.json`` names this class); the 5B path keeps diffusers' own class.

``widen_decoder(vae, source_state)`` starts the wider decoder as the function of a narrower one
(Net2WiderNet: every channel of the source repeated ``k`` times, input weights divided by ``k``),
so training begins where the narrow decoder ended instead of from noise; ``widen_encoder`` does the
same for a wider encoder (``block_out_channels``), whose latents then start as the narrow one's.

Shapes as the parent: video (B, 3, F, H, W) ↔ latents (B, latent_channels, F', H/s, W/s).
"""

from __future__ import annotations

import torch
# ModelMixin must be a name in this module: diffusers' pipeline loader looks a component's load
# method up among the base classes its module exposes (as pixel_autoencoder does).
from diffusers import AutoencoderKLCogVideoX, ModelMixin  # noqa: F401
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXDecoder3D

from tora2.errors import InputError


class AsymmetricCogVideoXVAE(AutoencoderKLCogVideoX):
    """``AutoencoderKLCogVideoX`` with its own decoder width and depth (config fields
    ``decoder_block_out_channels``, ``decoder_layers_per_block``); everything else as the parent."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("CogVideoXDownBlock3D",) * 4,
        up_block_types: tuple[str, ...] = ("CogVideoXUpBlock3D",) * 4,
        block_out_channels: tuple[int, ...] = (128, 256, 256, 512),
        latent_channels: int = 16,
        layers_per_block: int = 3,
        act_fn: str = "silu",
        norm_eps: float = 1e-6,
        norm_num_groups: int = 32,
        temporal_compression_ratio: float = 4,
        sample_height: int = 480,
        sample_width: int = 720,
        scaling_factor: float = 1.15258426,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = False,
        use_post_quant_conv: bool = False,
        invert_scale_latents: bool = False,
        decoder_block_out_channels: tuple[int, ...] | None = None,
        decoder_layers_per_block: int | None = None,
    ):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            up_block_types=up_block_types, block_out_channels=block_out_channels, latent_channels=latent_channels,
            layers_per_block=layers_per_block, act_fn=act_fn, norm_eps=norm_eps, norm_num_groups=norm_num_groups,
            temporal_compression_ratio=temporal_compression_ratio, sample_height=sample_height, sample_width=sample_width,
            scaling_factor=scaling_factor, shift_factor=shift_factor, latents_mean=latents_mean, latents_std=latents_std,
            force_upcast=force_upcast, use_quant_conv=use_quant_conv, use_post_quant_conv=use_post_quant_conv,
            invert_scale_latents=invert_scale_latents,
        )
        widths = tuple(decoder_block_out_channels or block_out_channels)
        if len(widths) != len(up_block_types):
            raise InputError(f"vae decoder_block_out_channels {list(widths)} needs one width per up block "
                             f"({len(up_block_types)}); give {len(up_block_types)} widths")
        if any(w % norm_num_groups for w in widths):
            raise InputError(f"vae decoder_block_out_channels {list(widths)}: every width must be a multiple of "
                             f"norm_num_groups ({norm_num_groups})")
        self.decoder = CogVideoXDecoder3D(
            in_channels=latent_channels, out_channels=out_channels, up_block_types=up_block_types,
            block_out_channels=widths, layers_per_block=decoder_layers_per_block or layers_per_block, act_fn=act_fn,
            norm_eps=norm_eps, norm_num_groups=norm_num_groups, temporal_compression_ratio=temporal_compression_ratio,
        )


def widen_decoder(vae: AsymmetricCogVideoXVAE, source: dict[str, torch.Tensor], noise: float = 0.01,
                  generator: torch.Generator | None = None) -> None:
    """Load the narrower decoder ``source`` (its ``decoder.*`` entries of a state dict) into ``vae.decoder``
    (``widen_part``). The depth must match (``decoder_layers_per_block`` as the source's)."""
    widen_part(vae.decoder, source, "decoder.", noise, generator,
               depth_fix="give decoder_layers_per_block equal to the source's layers_per_block")


def widen_encoder(vae: AutoencoderKLCogVideoX, source: dict[str, torch.Tensor], noise: float = 0.01,
                  generator: torch.Generator | None = None) -> None:
    """Load the narrower encoder ``source`` (its ``encoder.*`` entries) into ``vae.encoder`` (``widen_part``):
    with ``noise=0`` the wider encoder gives the same latents; the latent width itself never changes."""
    widen_part(vae.encoder, source, "encoder.", noise, generator, depth_fix="give layers_per_block equal to the source's")


@torch.no_grad()
def widen_part(part: torch.nn.Module, source: dict[str, torch.Tensor], prefix: str, noise: float = 0.01,
               generator: torch.Generator | None = None, depth_fix: str = "keep the source's depth") -> None:
    """Load the ``prefix``-ed entries of the narrower state dict ``source`` into ``part`` (an encoder or a decoder).

    Each tensor dimension that is ``k`` times wider repeats every source channel ``k`` times in place
    (channel j ← j // k, so GroupNorm groups keep their members and statistics); a weight's input
    dimension is also divided by ``k``, so the sums it forms are unchanged. With ``noise=0`` the wide
    part computes exactly what the narrow one did; ``noise`` adds that fraction of each widened
    weight's standard deviation as Gaussian noise, without which repeated channels would stay copies.
    The depth must match (``depth_fix`` says how).
    """
    target = part.state_dict()
    given = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
    missing = sorted(set(target) - set(given))
    name = prefix.rstrip(".")
    if missing:
        raise InputError(f"the source VAE's {name} lacks {missing[0]} (and {len(missing) - 1} more); widening keeps "
                         f"the depth: {depth_fix}")
    for key, wide in target.items():
        narrow = given[key]
        if wide.ndim != narrow.ndim:
            raise InputError(f"{name} {key}: rank {narrow.ndim} in the source, {wide.ndim} here")
        value = narrow.float()
        dims = (0, 1) if wide.ndim >= 2 else (0,) if wide.ndim == 1 else ()
        widened = False
        for dim in dims:
            k, rest = divmod(wide.shape[dim], narrow.shape[dim])
            if rest or k < 1:
                raise InputError(f"{name} {key}: width {wide.shape[dim]} is not a multiple of the source's "
                                 f"{narrow.shape[dim]}; widen every {name} block by a whole factor")
            if k > 1:
                value = value.repeat_interleave(k, dim=dim)
                if dim == 1:
                    value = value / k  # k copies of each input channel now feed this weight
                widened = True
        if widened and noise > 0 and wide.ndim >= 2:
            value = value + noise * value.std() * torch.randn(value.shape, generator=generator)
        target[key] = value.to(wide.dtype)
    part.load_state_dict(target, strict=True)


@torch.no_grad()
def widen_latent(vae: AutoencoderKLCogVideoX, source: dict[str, torch.Tensor], log_variance: float = -8.0) -> None:
    """Load the state dict ``source`` of a VAE with fewer latent channels (L) into ``vae`` (L' > L), so
    that it starts as the source's function: the first L latent channels are the source's, the extra
    ones are read by nothing yet.

    Every layer but the two ends of the latent loads as saved. The encoder's ``conv_out`` gives means
    and log-variances (2L rows → 2L'): the source's mean rows go to 0…L−1 and its log-variance rows to
    L'…L'+L−1; the extra mean rows keep ``vae``'s initialisation scaled by 0.1, the extra log-variance
    rows get zero weights and a bias of ``log_variance`` (near-deterministic, like the trained ones).
    Every decoder weight that reads the latent (its ``conv_in`` and the spatial norms' ``conv_y`` /
    ``conv_b``: input dimension L → L') gets the source's weights on the first L inputs and zeros on
    the rest, so decoding ignores the extra channels until training gives them a use.
    """
    target = vae.state_dict()
    old, new = int(source["encoder.conv_out.conv.bias"].shape[0]) // 2, int(vae.config.latent_channels)
    if new <= old:
        raise InputError(f"widen_latent: the VAE has {new} latent channels, the source {old}; it only adds channels")
    out = {}
    for key, value in target.items():
        if key not in source:
            raise InputError(f"widen_latent: the source has no {key}; give it the same layers apart from latent_channels")
        given = source[key]
        if given.shape == value.shape:
            out[key] = given
        elif key.startswith("encoder.conv_out."):  # (2L, …) → (2L', …): means, then log-variances
            widened = value.clone()
            widened[old:new] = 0.1 * value[old:new]
            widened[:old], widened[new : new + old] = given[:old], given[old:]
            widened[new + old :] = log_variance if key.endswith("bias") else 0.0
            out[key] = widened
        elif key.startswith("decoder.") and value.dim() > 1 and given.shape[1] == old and value.shape[1] == new:
            widened = torch.zeros_like(value)
            widened[:, :old] = given
            out[key] = widened
        else:
            raise InputError(f"widen_latent: {key} is {tuple(given.shape)} in the source and {tuple(value.shape)} here; "
                             "only the latent width may differ")
    vae.load_state_dict(out)
