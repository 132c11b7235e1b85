"""Does an entity stay visible along its path, frame by frame? For held-out one-entity cases the
colour-histogram similarity (tora2.evaluation.ColorHistogram, the eval's appearance embedding) between
the reference and a square crop at the *requested* point (sprite size × 1.15) is computed in every
frame, for the ground-truth render, for the render after the model's autoencoder round trip (the
ceiling of any denoiser on its latents) and for the model's video. Prints a table: frame → mean similarity.

    python scripts/presence_by_frame.py [MODEL_DIR] [--cases 10] [--steps 50]
"""

from __future__ import annotations

import argparse

import numpy as np

from tora2.evaluation import make_cases, pipeline_generator, reconstruction_generator
from tora2.evaluation.metrics import CROP_MARGIN, ColorHistogram, crop_square
from tora2.pipelines.embedded import load_pipeline
from tora2.synthetic.sprites import sprite_on_white


def presence(frames: np.ndarray, entity, histogram: ColorHistogram) -> np.ndarray:
    """(F, H, W, 3) uint8 → (F,) similarity of the crop at the requested point to the reference."""
    reference = histogram.embed([sprite_on_white(entity.sprite)])[0]
    crops = [crop_square(f, p, s * CROP_MARGIN) for f, p, s in zip(frames, entity.points, entity.sizes)]
    return histogram.embed(crops) @ reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="pipeline folder (default: the embedded model)")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    pipe, model_id = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    videos = {"ground truth": lambda case: case.frames, "autoencoder round trip": reconstruction_generator(pipe),
              model_id: pipeline_generator(pipe, num_inference_steps=args.steps, seed=0)}
    histogram = ColorHistogram()
    rows = {name: [] for name in videos}
    for case in make_cases(args.cases, 9, 64, 64, entity_counts=(1,)):
        for name, video in videos.items():
            rows[name].append(presence(video(case), case.entities[0], histogram))
    print(f"{model_id}, {args.cases} held-out one-entity cases: similarity of the crop at the requested point to the reference")
    frames = len(rows[model_id][0])
    print("| frame | " + " | ".join(str(f) for f in range(frames)) + " | mean |")
    print("|---|" + "---|" * (frames + 1))
    for name, values in rows.items():
        mean = np.mean(values, 0)
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in mean) + f" | {mean.mean():.2f} |")


if __name__ == "__main__":
    main()
