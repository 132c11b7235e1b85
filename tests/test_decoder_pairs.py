"""scripts/decoder_pairs.py: the clean target a learned decoder is trained to draw from generated latents."""

import importlib.util
from pathlib import Path

import numpy as np

from tora2.evaluation import make_cases
from tora2.synthetic.clips import render_clip

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("decoder_pairs", ROOT / "scripts" / "decoder_pairs.py")
decoder_pairs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decoder_pairs)


def test_target_is_the_cases_sprites_on_the_generated_background_without_its_noise():
    case = make_cases(1, 9, 64, 64, split="train", seed=3, entity_counts=(2,))[0]
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
    background = np.stack([60 + xs, 200 - ys, 100 + 0.02 * (xs - 32) ** 2], axis=-1)  # (H, W, 3): a quadratic surface
    generated = np.repeat(background[None], 9, axis=0).astype(np.float32)  # (F, H, W, 3)
    rng = np.random.default_rng(0)
    for f in range(9):  # a square of coloured noise around each entity, as a denoiser leaves it
        for e in case.entities:
            x, y = np.rint(e.points[f]).astype(int)
            y0, y1, x0, x1 = max(y - 8, 0), min(y + 8, 64), max(x - 8, 0), min(x + 8, 64)
            generated[f, y0:y1, x0:x1] = rng.uniform(0, 255, (y1 - y0, x1 - x0, 3))
    target = decoder_pairs.target_clip(generated, case.entities)
    assert target.shape == (9, 64, 64, 3) and target.dtype == np.uint8
    # The noise is gone: the surface is recovered under it and the sprites are drawn as the renders draw them.
    expected = render_clip(np.clip(np.rint(background), 0, 255).astype(np.uint8), case.entities)
    assert np.abs(target.astype(int) - expected.astype(int)).max() <= 1
