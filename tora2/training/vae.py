"""Stage ``vae``: train the video VAE (``AutoencoderKLCogVideoX``) on synthetic sprite clips.

The embedded default model starts from random weights everywhere, and a random VAE maps frames to
latents no diffusion model can learn from; so its VAE is trained first, on its own:

1. a batch of synthetic training clips (``SyntheticClipDataset``, drawn on the fly, no files), each
   cut to a random ``crop_size`` square (the VAE is convolutional: crops train it for any size and
   cost a fraction of full frames);
2. posterior → sample → decode; loss = l1 · |x̂ − x| + l2 · (x̂ − x)² + kl · KL(q ‖ N(0, 1)), all
   per-element means, so the weights do not depend on the clip size;
3. AdamW with linear warm-up and gradient clipping.

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
from typing import Any

import torch
from einops import rearrange

from tora2.configuration import load_config, parse_override, write_yaml
from tora2.errors import InputError
from tora2.training.config import ModelSettings

logger = logging.getLogger("tora2.training")


@dataclass
class VAEDataConfig:
    seed: int = 0  # SyntheticClipDataset seed (split "train")
    num_clips: int = 100_000  # clip indices drawn from [0, num_clips)
    num_frames: int = 9  # 4k + 1
    height: int = 96
    width: int = 96
    crop_size: int = 64  # random square crop per clip (multiple of 16); 0 = whole frames
    max_entities: int = 3


@dataclass
class VAEOptimConfig:
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_grad_norm: float = 1.0  # 0 = no clipping


@dataclass
class VAELossConfig:
    l1: float = 1.0
    l2: float = 1.0
    kl: float = 1e-4  # per-element KL; small: the latents must keep the detail


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
    progress: bool = False
    model: ModelSettings = field(default_factory=ModelSettings)
    data: VAEDataConfig = field(default_factory=VAEDataConfig)
    optim: VAEOptimConfig = field(default_factory=VAEOptimConfig)
    loss: VAELossConfig = field(default_factory=VAELossConfig)

    def __post_init__(self) -> None:
        check_vae_config(self)


def check_vae_config(cfg: VAETrainConfig) -> None:
    if not isinstance(cfg.data, VAEDataConfig):
        return  # from_dict builds the nested sections after; checked again by load_vae_config
    for name in ("max_steps", "batch_size", "scaling_clips"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer ≥ 1; got {value!r}")
    data = cfg.data
    if (data.num_frames - 1) % 4:
        raise InputError(f"data.num_frames is {data.num_frames}; the CogVideoX VAE needs 4k + 1 frames (e.g. 9, 13, 49)")
    if data.crop_size % 16 or data.crop_size < 0 or data.crop_size > min(data.height, data.width):
        raise InputError(f"data.crop_size is {data.crop_size}; use 0 (whole frames) or a multiple of 16 up to "
                         f"{min(data.height, data.width)} (the frame's shorter side)")
    for name in ("l1", "l2", "kl"):
        if getattr(cfg.loss, name) < 0:
            raise InputError(f"loss.{name} must be ≥ 0; got {getattr(cfg.loss, name)}")


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
    scaling_factor: float | None = None
    pipeline_dir: Path | None = None
    seconds: float = 0.0


def vae_batch(dataset, indices: list[int], crop_size: int, generator: torch.Generator) -> torch.Tensor:
    """Clips ``indices`` of ``dataset`` → (B, 3, F, S, S) in [−1, 1], one random crop per clip."""
    videos = []
    for index in indices:
        video = dataset[index]["video"]  # (F, 3, H, W)
        if crop_size:
            height, width = video.shape[-2:]
            top = int(torch.randint(0, height - crop_size + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_size + 1, (1,), generator=generator))
            video = video[..., top : top + crop_size, left : left + crop_size]  # (F, 3, S, S)
        videos.append(video)
    return rearrange(torch.stack(videos), "b f c h w -> b c f h w")  # (B, 3, F, S, S)


def vae_loss(vae, video: torch.Tensor, weights: VAELossConfig, generator: torch.Generator | None = None):
    """(total, l1, l2, kl) of one batch (B, 3, F, H, W) in [−1, 1]."""
    posterior = vae.encode(video).latent_dist
    latents = posterior.sample(generator)  # (B, C, Fl, h, w)
    recon = vae.decode(latents).sample  # (B, 3, F, H, W)
    l1 = (recon - video).abs().mean()
    l2 = (recon - video).pow(2).mean()
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    return weights.l1 * l1 + weights.l2 * l2 + weights.kl * kl, l1, l2, kl


@torch.no_grad()
def measure_scaling_factor(vae, dataset, indices: list[int]) -> float:
    """1 / std of the posterior means over whole clips ``indices``."""
    means = []
    for index in indices:
        video = rearrange(dataset[index]["video"][None], "b f c h w -> b c f h w")
        means.append(vae.encode(video).latent_dist.mean.flatten())
    return float(1.0 / torch.cat(means).std())


def save_vae_pipeline(components: dict, vae, path: Path) -> Path:
    from tora2.training.loop import save_pipeline

    return save_pipeline({**components, "vae": vae}, path)


def train_vae(cfg: VAETrainConfig, dataset=None, *, components: dict | None = None) -> VAETrainResult:
    """Train ``components["vae"]`` per ``cfg``; writes config.yaml, losses.json and pipeline/ to output_dir.

    dataset: clips in the training-sample layout (default: ``SyntheticClipDataset`` per ``cfg.data``).
    components: the pipeline components (default: built from ``cfg.model`` as ``train()`` does).
    """
    from tora2.synthetic import SyntheticClipDataset
    from tora2.training.config import TrainConfig
    from tora2.training.loop import build_components, step_seed

    check_vae_config(cfg)
    data = cfg.data
    if dataset is None:
        dataset = SyntheticClipDataset(data.num_clips, data.seed, "train", data.num_frames, data.height, data.width,
                                       data.max_entities)
    if components is None:
        components = build_components(TrainConfig(model=cfg.model))
    vae = components["vae"]
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(cfg, output_dir / "config.yaml")

    torch.manual_seed(cfg.seed)
    vae.requires_grad_(True)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.optim.learning_rate, weight_decay=cfg.optim.weight_decay)
    warmup = cfg.optim.warmup_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0)
    result = VAETrainResult(output_dir=output_dir)
    progress = None
    if cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.max_steps, desc="train vae", unit="step")
    # Clips for the scaling factor come from the end of the index range, away from the batches' draws.
    scaling_indices = list(range(len(dataset) - cfg.scaling_clips, len(dataset)))
    start = time.monotonic()
    for step in range(1, cfg.max_steps + 1):
        generator = torch.Generator().manual_seed(step_seed(cfg.seed, step))
        indices = torch.randint(0, len(dataset) - cfg.scaling_clips, (cfg.batch_size,), generator=generator).tolist()
        video = vae_batch(dataset, indices, data.crop_size, generator)
        total, l1, l2, kl = vae_loss(vae, video, cfg.loss, generator)
        total.backward()
        if cfg.optim.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.optim.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        result.steps.append(step)
        for name, value in (("losses", total), ("l1", l1), ("l2", l2), ("kl", kl)):
            getattr(result, name).append(float(value.detach()))
        if step % max(1, cfg.log_every) == 0 or step == cfg.max_steps:
            print(f"vae step {step}/{cfg.max_steps} loss={result.losses[-1]:.4g} l1={result.l1[-1]:.4g} "
                  f"l2={result.l2[-1]:.4g} kl={result.kl[-1]:.4g} elapsed={time.monotonic() - start:.0f}s", flush=True)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(l1=f"{result.l1[-1]:.4f}")
        out_of_time = cfg.max_minutes > 0 and time.monotonic() - start > 60 * cfg.max_minutes
        if out_of_time or step == cfg.max_steps or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
            vae.eval()
            result.scaling_factor = measure_scaling_factor(vae, dataset, scaling_indices)
            vae.register_to_config(scaling_factor=result.scaling_factor)
            result.pipeline_dir = save_vae_pipeline(components, vae, output_dir / "pipeline")
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


def write_losses(result: VAETrainResult, path: Path) -> None:
    path.write_text(json.dumps({"step": result.steps, "loss": result.losses, "l1": result.l1, "l2": result.l2,
                                "kl": result.kl, "scaling_factor": result.scaling_factor,
                                "seconds": round(result.seconds, 1)}))


def main(argv: list[str] | None = None) -> int:
    """``python -m tora2.training.vae CONFIG [--set key=value ...]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tora2.training.vae", description=main.__doc__)
    parser.add_argument("config", help="VAE training config YAML (configs/train/embedded-vae.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override (repeatable)")
    args = parser.parse_args(argv)
    try:
        cfg = load_vae_config(args.config, args.overrides + ["progress=true"])
        result = train_vae(cfg)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{cfg.output_dir}: {len(result.steps)} step(s), final l1 {result.l1[-1]:.4f}, "
          f"scaling_factor {result.scaling_factor:.4f}; pipeline {result.pipeline_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
