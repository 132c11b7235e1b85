"""Training losses: CogVideoX's diffusion loss (v- or x-prediction) and Tora2's motion–appearance contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tora2.models.binding import trajectory_locality_bias


def motion_appearance_contrastive_loss(
    z_p: torch.Tensor, z_m: torch.Tensor, logit_scale: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE between appearance and motion embeddings of every entity in the batch.

    z_p, z_m: (B, E, Dc) or (N, Dc), L2-normalised. valid: (B, E) / (N,) bool, False for padding
    entities. Each entity's positive is its own motion; negatives are all other entities in the batch,
    so a batch of single-entity samples still contributes. Returns 0 when fewer than 2 entities.
    """
    if z_p.shape != z_m.shape:
        raise ValueError(f"z_p and z_m must have the same shape; got {tuple(z_p.shape)} and {tuple(z_m.shape)}")
    z_p, z_m = z_p.reshape(-1, z_p.shape[-1]), z_m.reshape(-1, z_m.shape[-1])  # (N, Dc)
    if valid is not None:
        keep = valid.reshape(-1).bool()
        z_p, z_m = z_p[keep], z_m[keep]
    if z_p.shape[0] < 2:
        return z_p.sum() * 0.0  # keeps the graph (and DDP's gradient buckets) intact
    scale = logit_scale.exp().clamp(max=100.0)
    logits = scale * z_p @ z_m.t()  # (N, N)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


PREDICTION_TYPES = ("v_prediction", "sample")


def predicted_clean(model_output: torch.Tensor, noisy_latents: torch.Tensor, timesteps: torch.Tensor,
                    alphas_cumprod: torch.Tensor, prediction_type: str = "v_prediction") -> torch.Tensor:
    """The clean latents x̂0 (B, F, C, H, W) the model's output implies, for the scheduler's ``prediction_type``."""
    if prediction_type == "sample":
        return model_output.float()
    if prediction_type != "v_prediction":
        raise ValueError(f"prediction_type {prediction_type!r} is not trained here; use one of {', '.join(PREDICTION_TYPES)}")
    alphas = alphas_cumprod.to(model_output.device, torch.float32)[timesteps].view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
    return alphas.sqrt() * noisy_latents.float() - (1 - alphas).sqrt() * model_output.float()


def diffusion_loss(
    model_output: torch.Tensor,
    noisy_latents: torch.Tensor,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    weight: torch.Tensor | None = None,
    prediction_type: str = "v_prediction",
    min_sigma: float = 0.05,
) -> torch.Tensor:
    """CogVideoX's loss, for the scheduler's ``prediction_type``: the implied clean latents x̂0 are
    compared with the true ones, weighted by 1 / σ² = 1 / (1 − ᾱ_t), which is the squared error of v.

    * ``v_prediction`` (CogVideoX): the model predicts v; x̂0 = √ᾱ·x_t − σ·v̂.
    * ``sample`` (x-prediction): the model predicts x̂0 itself; the weight is capped at
      1 / ``min_sigma``² where σ → 0 (0.05: JiT's cap on 1 / (1 − t)). A network whose token is
      wider than its hidden width (pixel latents: 192 values a token, width 128) cannot carry white
      noise through, so v (mostly noise at high SNR) is out of its reach while clean images, which
      lie on a low-dimensional set, are not (Li & He, "Back to Basics: Let Denoising Generative
      Models Denoise", 2025).

    model_output, noisy_latents, latents: (B, F, C, H, W); timesteps: (B,) long;
    alphas_cumprod: the scheduler's (T,) table. weight: optional per-position weights broadcastable to
    the latents, e.g. (B, F, 1, H, W) from :func:`entity_loss_weights`.
    """
    alphas = alphas_cumprod.to(latents.device, torch.float32)[timesteps].view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
    x0_pred = predicted_clean(model_output, noisy_latents, timesteps, alphas_cumprod, prediction_type)
    weights = 1.0 / (1 - alphas) if prediction_type == "v_prediction" else 1.0 / (1 - alphas).clamp_min(min_sigma**2)
    if weight is not None:
        weights = weights * weight.float()  # (B, F, 1, H, W)
    return (weights * (x0_pred - latents.float()) ** 2).flatten(1).mean(1).mean()


def entity_crops(frames: torch.Tensor, positions: torch.Tensor, size: float, out: int = 16) -> torch.Tensor:
    """Square crops of side ``size`` (frame-width units) centred on ``positions``, resampled to ``out`` px.

    frames (B, F, 3, H, W); positions (B, E, F, 2) in [0, 1] (x, y) → (B, E, F, 3, out, out), bilinear,
    zeros outside the frame; differentiable in ``frames``.
    """
    b, f, c, h, w = frames.shape
    e = positions.shape[1]
    steps = (torch.arange(out, device=frames.device, dtype=frames.dtype) + 0.5) / out - 0.5  # (out,) in (−½, ½)
    offset_x = steps * size * 2  # grid_sample's [−1, 1] spans the width
    offset_y = steps * size * 2 * w / h
    centre = positions.to(frames.dtype) * 2 - 1  # (B, E, F, 2)
    grid = torch.stack(torch.broadcast_tensors(
        centre[..., None, None, 0] + offset_x[None, :],  # (B, E, F, 1, out)
        centre[..., None, None, 1] + offset_y[:, None],  # (B, E, F, out, 1)
    ), dim=-1)  # (B, E, F, out, out, 2)
    images = frames[:, None].expand(b, e, f, c, h, w).reshape(-1, c, h, w)  # (B·E·F, 3, H, W)
    crops = F.grid_sample(images, grid.reshape(-1, out, out, 2), align_corners=False)  # (B·E·F, 3, out, out)
    return crops.view(b, e, f, c, out, out)


def entity_appearance_loss(pred_frames: torch.Tensor, true_frames: torch.Tensor, positions: torch.Tensor,
                           visible: torch.Tensor, size: float) -> torch.Tensor:
    """1 − the zero-mean normalised cross-correlation (the tracker's match score) between the
    predicted and the true frames in a square of side ``size`` at each visible entity's position,
    averaged over visible (entity, frame) pairs; 0 when none is visible.

    pred_frames, true_frames (B, F, 3, H, W) in [−1, 1]; positions (B, E, F, 2) in [0, 1]; visible (B, E, F) bool.
    Unlike a squared error it does not reward the blurred mean of every plausible sprite: a flat crop
    scores 0 and only the sprite's own pattern of light and colour scores 1.
    """
    if not bool(visible.any()):
        return pred_frames.sum() * 0.0
    pred = entity_crops(pred_frames.float(), positions, size).flatten(3)  # (B, E, F, 3·16·16)
    true = entity_crops(true_frames.float(), positions, size).flatten(3)
    pred = pred - pred.mean(-1, keepdim=True)
    true = true - true.mean(-1, keepdim=True)
    ncc = (pred * true).sum(-1) / (pred.norm(dim=-1) * true.norm(dim=-1) + 1e-4)  # (B, E, F)
    return 1.0 - ncc[visible].mean()


def entity_loss_weights(
    positions: torch.Tensor, visible: torch.Tensor, latent_grid: tuple[int, int, int], extra: float, sigma: float
) -> torch.Tensor:
    """1 + extra·exp(−d²/2σ²) with d the distance to the nearest visible entity (width units).

    positions (B, E, F, 2) in [0, 1], visible (B, E, F) bool (False also for padding entities),
    latent_grid (F, H, W) → (B, F, 1, H, W).
    """
    num_frames, height, width = latent_grid
    batch = positions.shape[0]
    if positions.shape[1] == 0:
        return torch.ones(batch, num_frames, 1, height, width, device=positions.device)
    log_gauss = trajectory_locality_bias(positions.float(), visible, latent_grid, sigma, 1)  # (B, N, E), floor −50
    nearest = log_gauss.exp().amax(dim=2)  # (B, N)
    return (1 + extra * nearest).view(batch, num_frames, 1, height, width)
