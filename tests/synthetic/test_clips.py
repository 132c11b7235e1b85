import numpy as np
import pytest

from tora2.errors import InputError
from tora2.synthetic import load_sprites, make_background, synthesize_clip
from tora2.synthetic.backgrounds import KINDS
from tora2.compositing import paste_sprite
from tora2.synthetic.clips import PATH_SEED_RANGES, describe_motion


def test_clip_shapes_caption_and_determinism():
    sprites = load_sprites("heldout")
    frames, caption, entities = synthesize_clip(np.random.default_rng(3), sprites, 8, 64, 96, 2, split="heldout")
    again, caption2, entities2 = synthesize_clip(np.random.default_rng(3), sprites, 8, 64, 96, 2, split="heldout")
    assert frames.shape == (8, 64, 96, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, again) and caption == caption2
    assert len(entities) == 2 and len({e.sprite.codepoint for e in entities}) == 2
    assert " while " in caption and caption.startswith(entities[0].text)
    for e, e2 in zip(entities, entities2):
        assert e.points.shape == (8, 2) and e.visible.shape == (8,) and e.visible.all()
        assert np.array_equal(e.points, e2.points)
        assert (e.points[:, 0] >= 0).all() and (e.points[:, 0] <= 95).all()
        assert PATH_SEED_RANGES["heldout"][0] <= e.path_seed < PATH_SEED_RANGES["heldout"][1]


def test_train_and_heldout_path_seeds_are_disjoint():
    sprites = load_sprites("train")
    _, _, train = synthesize_clip(np.random.default_rng(0), sprites, 4, 64, 64, 3, split="train")
    assert all(e.path_seed < 2**31 for e in train)
    assert PATH_SEED_RANGES["train"][1] == PATH_SEED_RANGES["heldout"][0]


def test_paste_puts_the_sprite_centre_exactly_on_the_point():
    sprite = np.zeros((9, 9, 4), np.uint8)
    sprite[2:7, 2:7] = 255  # a white 5x5 square, centred in its box, on transparent
    sprite = sprite[2:7, 2:7]  # trimmed to the alpha box, as the shipped sprites are
    frame = np.zeros((40, 40, 3), np.float32)
    paste_sprite(frame, sprite, (17.3, 21.6), size=10.0, angle=0.0)
    weight = frame[..., 0]
    ys, xs = np.mgrid[0:40, 0:40]
    centroid = ((weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum())
    assert centroid == pytest.approx((17.3, 21.6), abs=1 / 32)  # cv2.warpAffine quantises positions to 1/32 px
    assert weight.sum() / 255 == pytest.approx(100.0, rel=0.02)  # 10x10 pixels of coverage


def test_motion_words():
    t = np.linspace(0, 1, 10)[:, None]
    assert describe_motion(np.hstack([10 + 80 * t, 50 + 0 * t]), 100, 100) == "moves from left to right"
    assert describe_motion(np.hstack([50 + 0 * t, 90 - 80 * t]), 100, 100) == "moves up"
    assert describe_motion(np.hstack([90 - 70 * t, 10 + 70 * t]), 100, 100) == "moves from the top right to the bottom left"
    assert describe_motion(np.full((10, 2), 50.0), 100, 100) == "stays still"


@pytest.mark.parametrize("kind", KINDS)
def test_backgrounds_every_kind(kind):
    image, got = make_background(np.random.default_rng(1), 48, 80, kind=kind)
    assert got == kind and image.shape == (48, 80, 3) and image.dtype == np.uint8
    assert image.std() > 1.0  # not a flat colour


def test_bad_sizes_are_one_line_errors():
    sprites = load_sprites("train")
    with pytest.raises(InputError, match="frame size 20x20 .* too small"):
        synthesize_clip(np.random.default_rng(0), sprites, 4, 20, 20, 1)
    with pytest.raises(InputError, match="num_entities is 0; use 1 to 124"):
        synthesize_clip(np.random.default_rng(0), sprites, 4, 64, 64, 0)
    with pytest.raises(InputError, match="background kind 'sky' is unknown"):
        make_background(np.random.default_rng(0), 8, 8, kind="sky")
