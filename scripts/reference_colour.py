"""Does a model take an entity's colour from its reference? Held-out one-entity cases are generated
with the reference as it is and hue-rotated by 120° and 240°; the mean colour of a 9×9 px patch on
the requested path (all frames) is compared. Prints one row per case and the mean |Δ colour|
(0–255, over RGB and both rotations): 0 would mean the reference's colour is ignored.

    python scripts/reference_colour.py [MODEL_DIR] [--cases 4] [--steps 25]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from tora2.evaluation import make_cases, pipeline_generator
from tora2.pipelines.embedded import load_pipeline
from tora2.synthetic.clips import rotate_hue

ROTATIONS = (120, 240)
HALF = 4  # patch half-size in pixels


def patch_colour(frames: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 frames, (F, 2) path → mean RGB of the patches on the path."""
    patches = [f[max(0, int(round(y)) - HALF): int(round(y)) + HALF + 1, max(0, int(round(x)) - HALF): int(round(x)) + HALF + 1]
               for f, (x, y) in zip(frames, points)]
    return np.mean([p.reshape(-1, 3).mean(0) for p in patches], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="pipeline folder (default: the embedded model)")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    pipe, model_id = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    generate = pipeline_generator(pipe, num_inference_steps=args.steps, seed=0)

    def recoloured(case, degrees: float):
        """The case with its entity's sprite (the reference it is given) hue-rotated."""
        entity = case.entities[0]
        sprite = replace(entity.sprite, image=rotate_hue(entity.sprite.image, degrees))
        return replace(case, entities=[replace(entity, sprite=sprite)])

    changes = []
    print(f"{model_id}: mean RGB on the path with the reference as is / hue +120° / +240°")
    for case in make_cases(args.cases, 9, 64, 64, entity_counts=(1,)):
        points = case.entities[0].points
        colours = [patch_colour(generate(case), points)]
        colours += [patch_colour(generate(recoloured(case, d)), points) for d in ROTATIONS]
        changes += [float(np.abs(c - colours[0]).mean()) for c in colours[1:]]
        print(f"{case.id} {case.entities[0].text}: " + " / ".join(str(tuple(int(v) for v in c.round())) for c in colours))
    print(f"mean |Δ colour| when the reference's hue turns: {np.mean(changes):.1f}")


if __name__ == "__main__":
    main()
