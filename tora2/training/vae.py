"""Stage ``vae``: train the video VAE (``AutoencoderKLCogVideoX``) on synthetic sprite clips.

(A ``PixelShuffleAutoencoder``, which has no weights to train, gets its per-channel statistics from
``scaling_clips`` clips instead: :func:`fit_statistics`.)

The embedded default model starts from random weights everywhere, and a random VAE maps frames to
latents no diffusion model can learn from; so its VAE is trained first, on its own:

1. a batch of synthetic training clips (``SyntheticClipDataset``, drawn on the fly, no files), each
   cut to a random ``window`` of frames and a ``crop_size`` square (the VAE is convolutional: crops
   train it for any size and cost a fraction of full frames); with ``crop_on_sprite`` the square is
   placed around one of the clip's sprites, so small moving sprites are never cut away;
2. posterior → sample → decode; loss = l1 · |x̂ − x| + l2 · (x̂ − x)² + gradient · |∇x̂ − ∇x|
   + kl · KL(q ‖ N(0, 1)), all
   per-element means (weighted 1 + ``sprite_weight`` on each sprite's box), so the weights do not
   depend on the clip size and the few sprite pixels are not drowned out by the background; with
   ``loss.adversarial`` the decoder also gets a patch discriminator's hinge term
   (``tora2.training.discriminator``), which learns alongside on real against decoded frames;
3. AdamW with linear warm-up and gradient clipping, from random weights or from ``init_vae`` (a
   saved VAE with the same layers: the compression ratios may differ, since time pooling has no
   weights, so a 4×-in-time VAE starts a per-frame one); with ``per_frame`` every causal time
   kernel is collapsed onto the current frame and kept there, so each frame is coded on its own.

At the end ``vae.config.scaling_factor`` is set to 1 / std of the latent means over
``scaling_clips`` fresh clips (what Stable Diffusion and CogVideoX did for theirs), so the diffusion
stage sees unit-variance latents. The output folder holds a complete pipeline (every other
component built from ``model.config`` with ``model.seed``, as ``train()`` builds them), so the next
stage starts from it with ``model.pretrained: <output_dir>/pipeline``.

Run: ``python -m tora2.training.vae configs/train/embedded-vae.yaml [--set key=value ...]``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from einops import rearrange

from tora2.configuration import check_positive_ints, load_config, parse_override, write_yaml
from tora2.errors import InputError
from tora2.training.config import ModelSettings
from tora2.training.optim import OptimConfig, build_optimizer, check_optim

logger = logging.getLogger("tora2.training")


@dataclass
class VAEDataConfig:
    seed: int = 0  # SyntheticClipDataset seed (split "train")
    num_clips: int = 100_000  # clip indices drawn from [0, num_clips)
    num_frames: int = 9  # frames per synthesized clip: k·t + 1 for the VAE's temporal compression t
    height: int = 96
    width: int = 96
    crop_size: int = 64  # random square crop per clip (multiple of 16); 0 = whole frames
    crop_on_sprite: bool = False  # centre each crop near a random sprite (± a quarter crop) instead of anywhere
    window: int = 0  # train on a random run of this many frames (k·t + 1); 0 = the whole clip
    max_entities: int = 3


@dataclass
class VAELossConfig:
    l1: float = 1.0
    l2: float = 1.0
    kl: float = 1e-4  # per-element KL; small: the latents must keep the detail
    sprite_weight: float = 0.0  # extra weight of the pixels inside each sprite's box (0 = plain means)
    # L1 between the horizontal and vertical pixel differences of x̂ and x (sprite-weighted like the
    # rest): an edge term that penalises blur, which plain L1/L2 average away on small sprites.
    gradient: float = 0.0
    # Gaussian noise on the latents before decoding, of a random level in [0, latent_noise] per clip
    # (latent units); for a decoder that must draw clean frames from a denoiser's imperfect latents.
    latent_noise: float = 0.0
    pairs: float = 1.0  # weight of the decoder_pairs term (generated latents → their target clips)
    # Weight of the decoder's adversarial term (a patch discriminator on single frames, hinge losses;
    # tora2/training/discriminator.py): rewards sharp detail where L1/L2 draw the blurred mean. 0 = off.
    adversarial: float = 0.0
    adversarial_start: int = 0  # steps in which only the discriminator learns before the decoder gets the term


@dataclass
class DiscriminatorConfig:
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # stride-2 4×4 convolutions: 8×8 logits on 64 px frames
    learning_rate: float = 2e-4  # Adam, betas (0.5, 0.9)


@dataclass
class VAETrainConfig:
    output_dir: str = "runs/embedded-vae"
    max_steps: int = 400
    max_minutes: float = 0.0  # stop early after this much wall time (0 = no limit); the steps taken are logged
    batch_size: int = 2
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100  # write output_dir/pipeline every N steps (0 = only at the end)
    scaling_clips: int = 16
    init_vae: str | None = None  # a saved VAE folder (config.json + weights) to start from; None = model's init
    per_frame: bool = False  # collapse every causal time kernel onto the current frame and keep it there (no frame mixing)
    # Train only the decoder: the encoder, its latent space and the scaling factor stay as loaded
    # (init_vae), so a transformer trained on those latents keeps working with the new decoder.
    decoder_only: bool = False
    # With decoder_only: a file of (generated latents, target clip) pairs (scripts/decoder_pairs.py);
    # each step also decodes pairs_batch_size of them and adds loss.pairs × their reconstruction loss
    # against the clips the denoiser was asked for, so the decoder learns what the denoiser leaves.
    decoder_pairs: str | None = None
    pairs_batch_size: int = 4
    pairs_max_error: float = 0.0  # keep only pairs whose worst entity TrajError is at most this (px); 0 = all
    # Keep only pairs whose worst entity's placement agreement (scripts/decoder_pairs.py: the shape
    # drawn at its point against its target's, normalised cross-correlation) is at least this; 0 = all.
    pairs_min_agreement: float = 0.0
    progress: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)
    data: VAEDataConfig = field(default_factory=VAEDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=1e-3, weight_decay=0.0, warmup_steps=20))
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # with loss.adversarial > 0

    def __post_init__(self) -> None:
        check_vae_config(self)


def check_vae_config(cfg: VAETrainConfig) -> None:
    if not isinstance(cfg.data, VAEDataConfig):
        return  # from_dict builds the nested sections after; checked again by load_vae_config
    check_positive_ints(cfg, ("max_steps", "batch_size", "scaling_clips", "pairs_batch_size"))
    if cfg.decoder_only and cfg.init_vae is None:
        raise InputError("decoder_only keeps the encoder as loaded; give init_vae (the VAE whose latent space to keep)")
    if cfg.decoder_pairs is not None and not cfg.decoder_only:
        raise InputError("decoder_pairs trains a decoder for a fixed latent space; set decoder_only: true")
    if isinstance(cfg.optim, OptimConfig):
        check_optim(cfg.optim, cfg.max_steps)
    data = cfg.data
    if data.num_frames < 2:
        raise InputError(f"data.num_frames is {data.num_frames}; a clip needs at least 2 frames (e.g. 9)")
    if data.window < 0 or data.window > data.num_frames:
        raise InputError(f"data.window is {data.window}; use 0 (whole clips) or 1 to data.num_frames ({data.num_frames})")
    if data.crop_size % 16 or data.crop_size < 0 or data.crop_size > min(data.height, data.width):
        raise InputError(f"data.crop_size is {data.crop_size}; use 0 (whole frames) or a multiple of 16 up to "
                         f"{min(data.height, data.width)} (the frame's shorter side)")
    if cfg.pairs_max_error < 0:
        raise InputError(f"pairs_max_error is {cfg.pairs_max_error}; use 0 (every pair) or a TrajError in pixels")
    if not 0.0 <= cfg.pairs_min_agreement < 1.0:
        raise InputError(f"pairs_min_agreement is {cfg.pairs_min_agreement}; use 0 (every pair) or an agreement in (0, 1), e.g. 0.6")
    for name in ("l1", "l2", "kl", "sprite_weight", "gradient", "latent_noise", "pairs", "adversarial", "adversarial_start"):
        if getattr(cfg.loss, name) < 0:
            raise InputError(f"loss.{name} must be ≥ 0; got {getattr(cfg.loss, name)}")
    if isinstance(cfg.discriminator, DiscriminatorConfig):
        channels = cfg.discriminator.channels
        if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
            raise InputError(f"discriminator.channels is {channels}; give positive widths, e.g. [32, 64, 128]")
        if not cfg.discriminator.learning_rate > 0:
            raise InputError(f"discriminator.learning_rate is {cfg.discriminator.learning_rate}; use a positive rate, e.g. 2e-4")


def load_vae_config(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> VAETrainConfig:
    """A VAETrainConfig from YAML plus ``key=value`` overrides (unknown keys rejected)."""
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    cfg = load_config(VAETrainConfig, path, overrides)
    check_vae_config(cfg)
    return cfg


@dataclass
class VAETrainResult:
    output_dir: Path
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    l1: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    adversarial: list[float] = field(default_factory=list)  # the decoder's term (before its weight), with loss.adversarial
    discriminator: list[float] = field(default_factory=list)  # the discriminator's hinge loss, with loss.adversarial
    scaling_factor: float | None = None
    pipeline_dir: Path | None = None
    seconds: float = 0.0


def check_frame_count(num_frames: int, temporal: int, name: str) -> None:
    """The CogVideoX VAE encodes k·t + 1 frames (t = its temporal compression)."""
    if (num_frames - 1) % temporal:
        raise InputError(f"{name} is {num_frames}; this VAE compresses {temporal}× in time and needs "
                         f"k·{temporal} + 1 frames (e.g. {2 * temporal + 1})")


def sprite_mask(entities, num_frames: int, height: int, width: int) -> torch.Tensor:
    """(F, H, W) float: 1 inside each entity's sprite box (its longer side, centred on its point), else 0."""
    mask = torch.zeros(num_frames, height, width)
    for entity in entities:
        for f in range(num_frames):
            (x, y), half = entity.points[f], entity.sizes[f] / 2.0
            x0, x1 = max(0, int(x - half)), min(width, int(x + half) + 1)
            y0, y1 = max(0, int(y - half)), min(height, int(y + half) + 1)
            mask[f, y0:y1, x0:x1] = 1.0
    return mask


def _crop_corner(size: int, crop: int, centre: float | None, generator: torch.Generator) -> int:
    if centre is None:
        return int(torch.randint(0, size - crop + 1, (1,), generator=generator))
    jitter = crop // 4
    offset = int(torch.randint(-jitter, jitter + 1, (1,), generator=generator))
    return min(max(int(round(centre)) - crop // 2 + offset, 0), size - crop)


def vae_batch(dataset, indices: list[int], crop_size: int, generator: torch.Generator, window: int = 0,
              crop_on_sprite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``indices`` of ``dataset`` → video (B, 3, F', S, S) in [−1, 1] and its sprite mask (B, 1, F', S, S).

    Each clip is cut to a random run of ``window`` frames (0: all F) and one ``crop_size`` square
    (0: whole frames), the same square in every frame; with ``crop_on_sprite`` the square is centred
    near one of the clip's sprites in the run's first frame.
    """
    videos, masks = [], []
    for index in indices:
        frames, _, entities = dataset.clip(index)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, H, W)
        num_frames, _, height, width = video.shape
        mask = sprite_mask(entities, num_frames, height, width)[:, None]  # (F, 1, H, W)
        start = 0
        if window:
            start = int(torch.randint(0, num_frames - window + 1, (1,), generator=generator))
            video, mask = video[start : start + window], mask[start : start + window]  # (F', ·, H, W)
        if crop_size:
            centre = (None, None)
            if crop_on_sprite and entities:
                pick = int(torch.randint(0, len(entities), (1,), generator=generator))
                centre = tuple(entities[pick].points[start])  # (x, y)
            top = _crop_corner(height, crop_size, centre[1], generator)
            left = _crop_corner(width, crop_size, centre[0], generator)
            video = video[..., top : top + crop_size, left : left + crop_size]  # (F', 3, S, S)
            mask = mask[..., top : top + crop_size, left : left + crop_size]  # (F', 1, S, S)
        videos.append(video)
        masks.append(mask)
    video = rearrange(torch.stack(videos), "b f c h w -> b c f h w")  # (B, 3, F', S, S)
    return video, rearrange(torch.stack(masks), "b f c h w -> b c f h w")  # (B, 1, F', S, S)


class VAELoss(NamedTuple):
    total: torch.Tensor
    l1: torch.Tensor
    l2: torch.Tensor
    kl: torch.Tensor
    recon: torch.Tensor  # the decoded batch (B, 3, F, H, W)


def vae_loss(vae, video: torch.Tensor, weights: VAELossConfig, generator: torch.Generator | None = None,
             sprite_mask: torch.Tensor | None = None) -> VAELoss:
    """(total, l1, l2, kl, recon) of one batch (B, 3, F, H, W) in [−1, 1]; l1 and l2 are the plain means
    (comparable across runs), the total uses their sprite-weighted means when a mask (B, 1, F, H, W) is given.
    With ``weights.latent_noise`` the latents get Gaussian noise of a random level in [0, latent_noise]
    per clip before decoding, so the decoder learns to draw clean frames from imperfect latents."""
    posterior = vae.encode(video).latent_dist
    latents = posterior.sample(generator)  # (B, C, Fl, h, w)
    if weights.latent_noise > 0:
        level = weights.latent_noise * torch.rand(latents.shape[0], 1, 1, 1, 1, generator=generator)
        latents = latents + level.to(latents) * torch.randn(latents.shape, generator=generator).to(latents)
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    recon = vae.decode(latents).sample  # (B, 3, F, H, W)
    total, l1, l2 = reconstruction_loss(recon, video, weights, sprite_mask)
    return VAELoss(total + weights.kl * kl, l1, l2, kl, recon)


def reconstruction_loss(recon: torch.Tensor, video: torch.Tensor, weights: VAELossConfig,
                        sprite_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weighted total, plain l1, plain l2) of decoded ``recon`` against ``video``, both (B, 3, F, H, W):
    l1 + l2 + gradient terms, sprite-weighted by ``sprite_mask`` (B, 1, F, H, W) when given."""
    error = recon - video
    l1, l2 = error.abs().mean(), error.pow(2).mean()
    weight = None
    if sprite_mask is not None and weights.sprite_weight > 0:
        weight = 1.0 + weights.sprite_weight * sprite_mask  # (B, 1, F, H, W)
    total = weights.l1 * _weighted_mean(error.abs(), weight) + weights.l2 * _weighted_mean(error.pow(2), weight)
    if weights.gradient > 0:
        edge_x = (error[..., :, 1:] - error[..., :, :-1]).abs()  # (B, 3, F, H, W−1): |∂x x̂ − ∂x x|
        edge_y = (error[..., 1:, :] - error[..., :-1, :]).abs()  # (B, 3, F, H−1, W)
        total = total + weights.gradient * 0.5 * (
            _weighted_mean(edge_x, None if weight is None else weight[..., :, 1:])
            + _weighted_mean(edge_y, None if weight is None else weight[..., 1:, :]))
    return total, l1, l2


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (B, 3, F, H, W) weighted by ``weight`` (B, 1, F, H, W, broadcast), or the plain mean."""
    if weight is None:
        return values.mean()
    weight = weight.expand_as(values)
    return (weight * values).sum() / weight.sum()


@torch.no_grad()
def collapse_time_kernels(vae, freeze: bool = True) -> int:
    """Make every causal 3D convolution of ``vae`` per-frame: its time taps summed into the current
    frame's tap, the earlier taps zeroed (and, with ``freeze``, their gradients zeroed from now on, so
    training keeps them at zero). Outputs on a still video are unchanged, and no frame leaks into the
    next any more: a VAE trained with time compression otherwise leaves ghosts of earlier sprite
    positions when run per frame (measured: docs/results.md). Returns the number of convolutions changed."""
    changed = 0
    for module in vae.modules():
        time_kernel = getattr(module, "time_kernel_size", 1)
        if type(module).__name__ == "CogVideoXCausalConv3d" and time_kernel > 1:
            weight = module.conv.weight  # (out, in, T, k, k): tap T−1 is the current frame (causal padding)
            weight[:, :, -1] = weight.sum(dim=2)
            weight[:, :, :-1] = 0.0
            if freeze:
                weight.register_hook(_zero_earlier_taps)
            changed += 1
    return changed


def _zero_earlier_taps(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.clone()
    grad[:, :, :-1] = 0.0
    return grad


def load_initial_vae(vae, path: str | Path) -> None:
    """Copy the weights and the scaling factor of the saved VAE at ``path`` into ``vae`` (strict:
    every layer must match). An encoder or decoder that is wider than the saved one's (wider
    ``block_out_channels``, or an ``AsymmetricCogVideoXVAE``'s ``decoder_block_out_channels``) starts
    as the saved one's function, widened (``widen_encoder`` / ``widen_decoder``); the other part is
    loaded as saved. A wider decoder alone keeps the latents; a wider encoder starts from them. More
    latent channels than the saved VAE's (same layers otherwise): ``widen_latent``, the extra channels
    unread at first."""
    from diffusers import AutoencoderKLCogVideoX

    from tora2.models.asymmetric_autoencoder import AsymmetricCogVideoXVAE, widen_decoder, widen_encoder, widen_latent
    from tora2.models.pixel_autoencoder import PixelShuffleAutoencoder

    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"init_vae {path} is not a saved VAE folder (no config.json); give e.g. tora2/data/embedded/vae")
    if isinstance(vae, PixelShuffleAutoencoder):  # statistics and basis as saved; a decoder the saved one lacks keeps its init
        from tora2.training.loop import load_init_weights

        saved = PixelShuffleAutoencoder.from_pretrained(str(path))
        load_init_weights(vae, saved, "vae", str(path), setting="init_vae")
        vae.register_to_config(scaling_factor=saved.config.scaling_factor)
        return
    saved = AutoencoderKLCogVideoX.load_config(str(path))
    saved_class = AsymmetricCogVideoXVAE if saved.get("decoder_block_out_channels") else AutoencoderKLCogVideoX
    source = saved_class.from_pretrained(str(path)).state_dict()
    if saved.get("latent_channels", 16) < vae.config.latent_channels:  # more latent channels: start as the saved function
        widen_latent(vae, source)
        vae.register_to_config(scaling_factor=saved["scaling_factor"])
        return
    state = vae.state_dict()
    same_io = all(saved.get(k) == vae.config.get(k) for k in ("in_channels", "out_channels", "latent_channels"))
    wider = {part: same_io and any(k.startswith(part) and (k not in source or source[k].shape != v.shape)
                                   for k, v in state.items())
             for part in ("encoder.", "decoder.")}
    try:
        widened = tuple(part for part, is_wider in wider.items() if is_wider)  # () when neither: every key is kept
        kept = {k: v for k, v in source.items() if not k.startswith(widened)}
        loaded = vae.load_state_dict(kept, strict=False)
        mismatched = [k for k in loaded.missing_keys if not k.startswith(widened)]
        if mismatched or loaded.unexpected_keys:
            raise RuntimeError(f"\n{(mismatched + loaded.unexpected_keys)[0]} differs")
        generator = torch.Generator().manual_seed(0)
        if wider["encoder."]:
            widen_encoder(vae, source, generator=generator)
        if wider["decoder."]:
            widen_decoder(vae, source, generator=generator)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise InputError(f"init_vae {path} has different layers from the configured VAE ({first}); "
                         "make block_out_channels, latent_channels and layers_per_block equal") from None
    vae.register_to_config(scaling_factor=saved["scaling_factor"])


@torch.no_grad()
def measure_scaling_factor(vae, dataset, indices: list[int]) -> float:
    """1 / std of the posterior means over whole clips ``indices``."""
    means = []
    for index in indices:
        video = rearrange(dataset[index]["video"][None], "b f c h w -> b c f h w")
        means.append(vae.encode(video).latent_dist.mean.flatten())
    return float(1.0 / torch.cat(means).std())


def save_vae_pipeline(components: dict, vae, path: Path, reference_guidance_scale: float | None = None) -> Path:
    from tora2.training.loop import save_pipeline

    return save_pipeline({**components, "vae": vae}, path, reference_guidance_scale)


def train_vae(cfg: VAETrainConfig, dataset=None, *, components: dict | None = None) -> VAETrainResult:
    """Train ``components["vae"]`` per ``cfg``; writes config.yaml, losses.json and pipeline/ to output_dir.

    dataset: clips in the training-sample layout (default: ``SyntheticClipDataset`` per ``cfg.data``).
    components: the pipeline components (default: built from ``cfg.model`` as ``train()`` does).
    """
    from tora2.synthetic import SyntheticClipDataset
    from tora2.training.config import TrainConfig
    from tora2.training.loop import build_components, pretrained_reference_guidance, step_seed

    check_vae_config(cfg)
    data = cfg.data
    if dataset is None:
        dataset = SyntheticClipDataset(data.num_clips, data.seed, "train", data.num_frames, data.height, data.width,
                                       data.max_entities)
    if components is None:
        components = build_components(TrainConfig(model=cfg.model, stage="full"))  # later stages train the rest
    vae = components["vae"]
    temporal = int(vae.config.temporal_compression_ratio)
    check_frame_count(data.num_frames, temporal, "data.num_frames")
    if data.window:
        check_frame_count(data.window, temporal, "data.window")
    if next(vae.parameters(), None) is None:  # a PixelShuffleAutoencoder without a decoder: only statistics
        return fit_statistics(cfg, components, dataset)
    if cfg.init_vae is not None:
        load_initial_vae(vae, cfg.init_vae)
    if cfg.per_frame:
        if temporal != 1:
            raise InputError(f"per_frame needs a VAE without time compression; this one compresses {temporal}× "
                             "(set vae temporal_compression_ratio: 1 in the model config)")
        collapse_time_kernels(vae)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(cfg, output_dir / "config.yaml")
    guidance = pretrained_reference_guidance(cfg.model)  # a new VAE does not change how the rest is best sampled

    torch.manual_seed(cfg.seed)
    trained = vae.decoder if cfg.decoder_only else vae  # the post-quant conv (if any) belongs to decoding
    if cfg.decoder_only and vae.post_quant_conv is not None:
        trained = torch.nn.ModuleList([vae.post_quant_conv, vae.decoder])
    vae.requires_grad_(False)
    trained.requires_grad_(True)
    vae.train()
    optimizer, schedule = build_optimizer(trained.parameters(), cfg.optim, cfg.max_steps)
    result = VAETrainResult(output_dir=output_dir)
    progress = None
    if cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.max_steps, desc="train vae", unit="step")
    # Clips for the scaling factor come from the end of the index range, away from the batches' draws.
    scaling_indices = list(range(len(dataset) - cfg.scaling_clips, len(dataset)))
    pairs = load_decoder_pairs(cfg.decoder_pairs, vae, cfg.pairs_max_error, cfg.pairs_min_agreement) if cfg.decoder_pairs else None
    if pairs is not None:
        print(f"vae: {len(pairs['latents'])} decoder pairs from {cfg.decoder_pairs}", flush=True)
    adversary = None
    if cfg.loss.adversarial > 0:
        from tora2.training.discriminator import Adversary

        adversary = Adversary(cfg.discriminator.channels, cfg.discriminator.learning_rate, cfg.seed)
    start = time.monotonic()
    for step in range(1, cfg.max_steps + 1):
        generator = torch.Generator().manual_seed(step_seed(cfg.seed, step))
        indices = torch.randint(0, len(dataset) - cfg.scaling_clips, (cfg.batch_size,), generator=generator).tolist()
        video, mask = vae_batch(dataset, indices, data.crop_size, generator, data.window, data.crop_on_sprite)
        total, l1, l2, kl, recon = vae_loss(vae, video, cfg.loss, generator, mask)
        if pairs is not None:
            total = total + cfg.loss.pairs * pairs_loss(vae, pairs, cfg.pairs_batch_size, cfg.loss, generator)
        if adversary is not None and step > cfg.loss.adversarial_start:
            fooled = adversary.generator_term(recon)
            total = total + cfg.loss.adversarial * fooled
            result.adversarial.append(float(fooled.detach()))
        total.backward()
        if cfg.optim.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trained.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if adversary is not None:
            result.discriminator.append(adversary.step(video, recon))
        result.steps.append(step)
        for name, value in (("losses", total), ("l1", l1), ("l2", l2), ("kl", kl)):
            getattr(result, name).append(float(value.detach()))
        if step % max(1, cfg.log_every) == 0 or step == cfg.max_steps:
            adversarial = "" if adversary is None else (
                f" disc={result.discriminator[-1]:.4g}" + (f" adv={result.adversarial[-1]:.4g}" if result.adversarial else ""))
            print(f"vae step {step}/{cfg.max_steps} loss={result.losses[-1]:.4g} l1={result.l1[-1]:.4g} "
                  f"l2={result.l2[-1]:.4g} kl={result.kl[-1]:.4g}{adversarial} elapsed={time.monotonic() - start:.0f}s", flush=True)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(l1=f"{result.l1[-1]:.4f}")
        out_of_time = cfg.max_minutes > 0 and time.monotonic() - start > 60 * cfg.max_minutes
        if out_of_time or step == cfg.max_steps or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            vae.eval()
            if cfg.decoder_only:  # same encoder: same latents, same scale
                result.scaling_factor = float(vae.config.scaling_factor)
            else:
                result.scaling_factor = measure_scaling_factor(vae, dataset, scaling_indices)
                vae.register_to_config(scaling_factor=result.scaling_factor)
            result.pipeline_dir = save_vae_pipeline(components, vae, output_dir / "pipeline", guidance)
            vae.train()
            write_losses(result, output_dir / "losses.json")
        if out_of_time:
            print(f"vae: stopped after {step} steps (max_minutes={cfg.max_minutes})", flush=True)
            break
    if progress is not None:
        progress.close()
    vae.eval()
    vae.requires_grad_(False)
    result.seconds = time.monotonic() - start
    write_losses(result, output_dir / "losses.json")
    return result


def load_decoder_pairs(path: str | Path, vae, max_error: float = 0.0, min_agreement: float = 0.0) -> dict[str, torch.Tensor]:
    """scripts/decoder_pairs.py's file → latents (N, C, F, h, w) unscaled, video (N, 3, F, H, W) in [−1, 1]
    (the targets), mask (N, 1, F, H, W); with ``max_error`` > 0 only the pairs whose worst entity
    TrajError is at most that many pixels, with ``min_agreement`` > 0 only those whose worst entity's
    placement agreement is at least that."""
    if not Path(path).is_file():
        raise InputError(f"decoder_pairs {path} is not a file; make it with scripts/decoder_pairs.py")
    store = torch.load(path)
    if "targets" not in store:
        raise InputError(f"decoder_pairs {path} has no targets (an interrupted run); rerun scripts/decoder_pairs.py to finish it")
    if min_agreement > 0 and "agreement" not in store:
        raise InputError(f"decoder_pairs {path} has no placement agreement (made before it existed); "
                         f"rerun scripts/decoder_pairs.py on it to add it, or set pairs_min_agreement: 0")
    keep = torch.ones(len(store["ids"]), dtype=torch.bool) if max_error <= 0 else store["errors"] <= max_error
    if min_agreement > 0:
        keep &= store["agreement"] >= min_agreement
    if not keep.any():
        raise InputError(f"decoder_pairs {path}: no pair has TrajError ≤ pairs_max_error={max_error} px and placement "
                         f"agreement ≥ pairs_min_agreement={min_agreement}; loosen them (0 = off)")
    store = {k: v[keep] for k, v in store.items() if torch.is_tensor(v)}
    latents = rearrange(store["latents"], "n f c h w -> n c f h w") / vae.config.scaling_factor
    if latents.shape[1] != vae.config.latent_channels:
        raise InputError(f"decoder_pairs {path} holds {latents.shape[1]}-channel latents; this VAE has "
                         f"{vae.config.latent_channels}: make the pairs with a denoiser of this latent space")
    video = rearrange(store["targets"], "n f h w c -> n c f h w").float() / 127.5 - 1.0
    return {"latents": latents, "video": video, "mask": store["masks"][:, None].float()}


def pairs_loss(vae, pairs: dict[str, torch.Tensor], batch_size: int, weights: VAELossConfig,
               generator: torch.Generator) -> torch.Tensor:
    """The reconstruction loss of ``batch_size`` random generated latents decoded against their clips."""
    pick = torch.randint(0, len(pairs["latents"]), (batch_size,), generator=generator)
    recon = vae.decode(pairs["latents"][pick]).sample  # (b, 3, F, H, W)
    return reconstruction_loss(recon, pairs["video"][pick], weights, pairs["mask"][pick])[0]


@torch.no_grad()
def fit_statistics(cfg: VAETrainConfig, components: dict, dataset) -> VAETrainResult:
    """A parameter-free autoencoder (``PixelShuffleAutoencoder``): its per-channel mean and standard
    deviation from ``scaling_clips`` whole clips (the clips the scaling factor would use), then the
    pipeline is saved as after training."""
    vae = components["vae"]
    start = time.monotonic()
    indices = range(len(dataset) - cfg.scaling_clips, len(dataset))
    videos = torch.stack([dataset[i]["video"] for i in indices])  # (N, F, 3, H, W)
    vae.set_statistics(rearrange(videos, "b f c h w -> b c f h w"))
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(cfg, output_dir / "config.yaml")
    result = VAETrainResult(output_dir=output_dir, scaling_factor=float(vae.config.scaling_factor))
    result.pipeline_dir = save_vae_pipeline(components, vae, output_dir / "pipeline")
    result.seconds = time.monotonic() - start
    write_losses(result, output_dir / "losses.json")
    return result


def write_losses(result: VAETrainResult, path: Path) -> None:
    losses = {"step": result.steps, "loss": result.losses, "l1": result.l1, "l2": result.l2, "kl": result.kl}
    if result.discriminator:  # loss.adversarial: the decoder's term from step adversarial_start + 1 on
        losses.update(adversarial=result.adversarial, discriminator=result.discriminator)
    path.write_text(json.dumps({**losses, "scaling_factor": result.scaling_factor, "seconds": round(result.seconds, 1)}))


def main(argv: list[str] | None = None) -> int:
    """``python -m tora2.training.vae CONFIG [--set key=value ...]``."""
    from tora2.configuration import run_stage

    return run_stage(argv, "tora2.training.vae", "configs/train/embedded-vae.yaml", load_vae_config, train_vae,
                     lambda cfg, r: f"{cfg.output_dir}: {len(r.steps)} step(s)"
                                    + (f", final l1 {r.l1[-1]:.4f}" if r.l1 else " (statistics only)")
                                    + f", scaling_factor {r.scaling_factor:.4f}; pipeline {r.pipeline_dir}")


if __name__ == "__main__":
    sys.exit(main())
