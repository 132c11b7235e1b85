"""The embedded model's autoencoder: what the wider decoder costs, in decoding and in a whole generation.

Builds two VAEs from the shipped VAE's config (random weights: the cost does not depend on them) —
the 16/32/32 decoder of diffusers' ``AutoencoderKLCogVideoX`` and the shipped
``AsymmetricCogVideoXVAE`` with its own decoder width — and times, alternating the two in every
round:

* ``decode``: one 9-frame 64×64 clip's latents decoded (what the pipeline does once per video);
* ``encode``: the same clip encoded (training encodes every clip; the encoder is shared);
* ``generate``: the shipped pipeline's whole call (defaults: 50 steps, text and reference guidance,
  3 entities) with each VAE in place.

The minimum over rounds is reported (a shared CPU only slows a run down), and the ratio wide / narrow.

    .venv/bin/python benchmarks/bench_vae.py [--rounds 3] [--steps 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    import tora2  # noqa: F401  (before diffusers: the torchvision shim)
    from diffusers import AutoencoderKLCogVideoX

    from tora2.evaluation import make_cases
    from tora2.models.asymmetric_autoencoder import AsymmetricCogVideoXVAE
    from tora2.pipelines.embedded import EMBEDDED_DIR, load_pipeline

    config = AsymmetricCogVideoXVAE.load_config(str(EMBEDDED_DIR / "vae"))
    if not config.get("decoder_block_out_channels"):
        print(f"error: the shipped VAE ({EMBEDDED_DIR / 'vae'}) has no decoder of its own width; nothing to compare",
              file=sys.stderr)
        return 2
    narrow_config = {k: v for k, v in config.items() if k not in ("decoder_block_out_channels", "decoder_layers_per_block")}
    torch.manual_seed(0)
    vaes = {"narrow (16/32/32)": AutoencoderKLCogVideoX.from_config(narrow_config).eval(),
            f"wide ({'/'.join(map(str, config['decoder_block_out_channels']))})": AsymmetricCogVideoXVAE.from_config(config).eval()}
    video = torch.rand(1, 3, 9, 64, 64) * 2 - 1  # (B, C, F, H, W)
    pipe, _ = load_pipeline(None)
    pipe.set_progress_bar_config(disable=True)
    case = make_cases(1, 9, 64, 64, seed=0, entity_counts=(3,))[0]
    times: dict[str, dict[str, float]] = {name: {} for name in vaes}
    with torch.no_grad():
        latents = vaes[next(iter(vaes))].encode(video).latent_dist.mode()  # (1, 16, 9, 16, 16)
        for _ in range(args.rounds):
            for name, vae in vaes.items():
                row = times[name]
                row["encode"] = min(row.get("encode", np.inf), _seconds(lambda: vae.encode(video)))
                row["decode"] = min(row.get("decode", np.inf), _seconds(lambda: vae.decode(latents)))
                pipe.vae = vae
                run = lambda: pipe(case.prompt, entities=case.entity_specs(), num_frames=9, height=64, width=64,
                                   num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0))
                row["generate"] = min(row.get("generate", np.inf), _seconds(run))
    names = list(vaes)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; min of {args.rounds} rounds; "
          f"generate = {args.steps} steps, 3 entities, the model's default guidance")
    print("| | " + " | ".join(names) + " | wide / narrow |")
    print("|---|" + "---:|" * (len(names) + 1))
    for key in ("encode", "decode", "generate"):
        a, b = (times[n][key] for n in names)
        print(f"| {key} (s) | {a:.3f} | {b:.3f} | {b / a:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
