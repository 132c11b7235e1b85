"""Where in the noise schedule do sprite positions form? A measurement for choosing ``snr_shift_scale``.

    python scripts/schedule_legibility.py [--model runs/embedded/vae/pipeline] [--cases 3]

For held-out ground-truth clips, the VAE latents x₀ are noised to each signal-to-noise ratio SNR as
the scheduler does (x_t = √ᾱ·x₀ + √(1−ᾱ)·ε) and the clean-scale view x_t/√ᾱ = x₀ + ε/√SNR is decoded
and tracked with the evaluation tracker. The SNR below which the paths can no longer be read back
marks where the denoiser has to decide the layout; above it, sprite detail is refined. The script
then prints, for each candidate shift, the share of training timesteps (uniform over the
scheduler's 1000) that fall on either side, so the schedule can be picked for this latent size.
Prints two Markdown tables (docs/results.md keeps them).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import tora2  # noqa: F401  (torchvision shim)
from tora2.evaluation import make_cases, score_video
from tora2.pipelines.components import build_scheduler
from tora2.pipelines.conditioning import encode_video

SNR_LEVELS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
SHIFTS = (3.0, 2.0, 1.0, 0.5)


def legibility(pipe, cases, seed: int = 0) -> dict[float, tuple[float, float]]:
    """SNR → (mean TrajError % of width, binding accuracy) of the decoded noisy clips."""
    out = {}
    for snr in SNR_LEVELS:
        errors, bound = [], []
        generator = torch.Generator().manual_seed(seed)
        for case in cases:
            video = torch.from_numpy(case.frames).permute(0, 3, 1, 2).float()[None] / 127.5 - 1.0  # (1, F, 3, H, W)
            with torch.no_grad():
                latents = encode_video(pipe.vae, video)  # (1, Fl, C, h, w)
                noisy = latents + torch.randn(latents.shape, generator=generator) / np.sqrt(snr)
                decoded = pipe.decode_latents(noisy)[0]  # (3, F, H, W)
            frames = np.clip(np.rint((decoded.permute(1, 2, 3, 0).numpy() + 1.0) * 127.5), 0, 255).astype(np.uint8)
            rows = score_video(frames, case)
            errors += [r["traj_error_pct_width"] for r in rows]
            bound += [r["binding_correct"] for r in rows if r["binding_correct"] is not None]
        out[snr] = (float(np.mean(errors)), float(np.mean(bound)) if bound else float("nan"))
    return out


def timestep_shares(threshold: float) -> dict[float, tuple[float, float]]:
    """shift → (share of training timesteps with SNR < threshold, share with SNR ≥ 1)."""
    shares = {}
    for shift in SHIFTS:
        alphas = build_scheduler({"type": "dpm", "snr_shift_scale": shift}).alphas_cumprod.double().numpy()
        snr = alphas / np.maximum(1.0 - alphas, 1e-20)
        shares[shift] = (float(np.mean(snr < threshold)), float(np.mean(snr >= 1.0)))
    return shares


def main() -> None:
    from tora2.pipelines.embedded import load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the embedded model)")
    parser.add_argument("--cases", type=int, default=3, help="held-out cases per entity count (1, 2, 3)")
    args = parser.parse_args()
    pipe, model_id = load_pipeline(args.model)
    num_frames, height, width = pipe.default_size
    cases = make_cases(args.cases, num_frames, height, width)
    table = legibility(pipe, cases)
    print(f"model {model_id}, {len(cases)} held-out cases\n")
    print("| SNR | TrajError (% width) | binding acc. |\n|---|---|---|")
    for snr, (error, bound) in table.items():
        print(f"| {snr:g} | {error:.1f} | {bound:.2f} |")
    clean = table[max(SNR_LEVELS)][0]
    readable = [snr for snr, (error, _) in table.items() if error <= 2.0 * clean + 2.0]
    threshold = min(readable) if readable else max(SNR_LEVELS)
    print(f"\npaths readable (TrajError ≤ 2 × clean + 2 points) from SNR {threshold:g}\n")
    print(f"| snr_shift_scale | timesteps with SNR < {threshold:g} (layout unreadable) | timesteps with SNR ≥ 1 |\n|---|---|---|")
    for shift, (below, above) in timestep_shares(threshold).items():
        print(f"| {shift:g} | {below:.0%} | {above:.0%} |")


if __name__ == "__main__":
    main()
