"""One-step clean-video predictions of a pipeline on noised held-out ground truth, as a PNG sheet.

    python scripts/clean_predictions.py [MODEL] -o sheet.png [--timesteps 950,800,600,300,100] [--noise-seed 1]
                                        [--no-placement]

For each of the first two held-out cases with 2 and 3 entities (seed 0): the ground-truth clip is
encoded, noised to each timestep with the scheduler's own ``add_noise``, and denoised in ONE
transformer call through the pipeline's real conditioning path (text guidance off, no reference
branch); the implied clean latents x̂0 (``tora2.training.losses.predicted_clean``: the output itself
for x-prediction, √ᾱ·x_t − σ·v̂ for v-prediction) are decoded. Rows: frames 0, 4 and 8 of each case;
columns: the ground truth, then one per timestep. What it answers: is a defect of the sampled videos
already in the model's single-step predictions (so in the weights), and does it change with the
noise drawn (``--noise-seed``) or without the placement latents (``--no-placement``)?
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

import tora2  # noqa: F401  (the torchvision shim, before diffusers)
from tora2.evaluation.runner import make_cases
from tora2.pipelines import conditioning
from tora2.pipelines.conditioning import encode_video
from tora2.pipelines.embedded import load_pipeline
from tora2.pipelines.video_io import to_uint8
from tora2.training.losses import predicted_clean


class OneStep:
    """A stand-in scheduler for a single call at timestep ``t``: its step returns x̂0."""

    init_noise_sigma = 1.0

    def __init__(self, real, t: int):
        self.real, self.t, self.config = real, t, real.config

    def set_timesteps(self, num_inference_steps, device=None):
        self.timesteps = torch.tensor([self.t])

    def scale_model_input(self, sample, timestep):
        return sample

    def step(self, model_output, timestep, sample, return_dict=False):
        t = torch.full((sample.shape[0],), self.t, dtype=torch.long)
        return (predicted_clean(model_output, sample, t, self.real.alphas_cumprod, self.real.config.prediction_type).to(sample),)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="pipeline folder (default: the embedded model)")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--timesteps", default="950,800,600,300,100")
    parser.add_argument("--noise-seed", type=int, default=1)
    parser.add_argument("--no-placement", action="store_true", help="zero the placement latents")
    args = parser.parse_args(argv)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    pipe, _ = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    real = pipe.scheduler
    if args.no_placement:
        original = conditioning.placement_latents
        conditioning.placement_latents = lambda *a, **k: torch.zeros_like(original(*a, **k))
    cases = make_cases(2, 9, 64, 64, seed=0, entity_counts=(2, 3))
    rows = []
    for case in cases:
        video = torch.from_numpy(case.frames).permute(0, 3, 1, 2).float()[None] / 127.5 - 1.0  # (1, F, 3, H, W)
        clean = encode_video(pipe.vae, video)  # (1, F', C, h, w)
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(args.noise_seed))
        columns = [case.frames[[0, 4, 8]]]  # (3, H, W, 3)
        for t in timesteps:
            noisy = real.add_noise(clean, noise, torch.tensor([t]))
            pipe.scheduler = OneStep(real, t)
            try:
                out = pipe(case.prompt, entities=case.entity_specs(), num_frames=9, height=64, width=64,
                           num_inference_steps=1, guidance_scale=1.0, reference_guidance_scale=0, latents=noisy,
                           output_type="np")
            finally:
                pipe.scheduler = real
            frames = to_uint8(out.frames[0])  # (F, H, W, 3)
            columns.append(frames[[0, 4, 8]])
        rows.append(np.concatenate([np.concatenate(list(c), axis=0) for c in columns], axis=1))  # (3H, (1+T)W, 3)
    sheet = np.concatenate(rows, axis=0)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(args.output)
    print(f"wrote {args.output}: {len(cases)} cases × frames 0, 4, 8; columns: ground truth, t = {timesteps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
