"""Path generators (shape, bounds, determinism) and previews (files written, pixels drawn)."""

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from tora2.errors import InputError
from tora2.trajectory import Track, bounce, circle, figure_eight, line, random_smooth, spiral, zigzag
from tora2.trajectory.preview import ENTITY_COLORS, animate_tracks, draw_tracks, save_preview

GENERATORS = [line, circle, spiral, zigzag, bounce, figure_eight, random_smooth]


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda g: g.__name__)
def test_generators_shape_bounds(generator):
    kwargs = {"seed": 7} if generator in (line, random_smooth) else {}
    path = generator(49, 480, 720, **kwargs)
    assert path.shape == (49, 2) and path.dtype == np.float64
    assert (path[:, 0] >= 48 - 1e-9).all() and (path[:, 0] <= 719 - 48 + 1e-9).all()  # 10% margin of 480
    assert (path[:, 1] >= 48 - 1e-9).all() and (path[:, 1] <= 479 - 48 + 1e-9).all()


def test_seeded_generators_are_deterministic_and_seed_dependent():
    np.testing.assert_array_equal(random_smooth(30, 100, 100, seed=1), random_smooth(30, 100, 100, seed=1))
    assert not np.array_equal(random_smooth(30, 100, 100, seed=1), random_smooth(30, 100, 100, seed=2))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(line(5, 64, 64, seed=rng_a), line(5, 64, 64, seed=rng_b))


def test_literal_shapes():
    np.testing.assert_allclose(line(3, 10, 10, start=(0, 0), end=(4, 8)), [[0, 0], [2, 4], [4, 8]])
    c = circle(5, 101, 101, margin=0.0)  # centre (50, 50), radius 50, clockwise from angle 0
    np.testing.assert_allclose(c, [[100, 50], [50, 100], [0, 50], [50, 0], [100, 50]], atol=1e-9)
    z = zigzag(7, 11, 21, teeth=1, margin=0.0)  # (0, 0) → (10, 10) → (20, 0)
    np.testing.assert_allclose(z[[0, 3, 6]], [[0, 0], [10, 10], [20, 0]])


def test_random_smooth_pauses_and_endpoints():
    path = random_smooth(60, 200, 300, seed=0, pause_probability=1.0)
    still = np.all(np.diff(path, axis=0) == 0, axis=1)
    assert still.sum() >= 3  # pauses hold the position exactly
    assert not np.all(still)


def test_generator_errors():
    with pytest.raises(InputError, match="num_frames is 1"):
        circle(1, 64, 64)
    with pytest.raises(InputError, match="margin 0.6"):
        circle(4, 64, 64, margin=0.6)


def tracks(num_frames=8, height=40, width=60):
    return [
        Track("a", "a cat", None, "object", circle(num_frames, height, width), np.ones(num_frames, bool)),
        Track("b", None, None, "auto", zigzag(num_frames, height, width), np.arange(num_frames) != 3),
    ]


def test_draw_tracks_uses_entity_colours_on_a_background():
    background = Image.new("RGB", (30, 20), (0, 0, 0))
    image = np.asarray(draw_tracks(tracks(), 40, 60, background=background))
    assert image.shape == (40, 60, 3)
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert ENTITY_COLORS[0] in colours and ENTITY_COLORS[1] in colours and (0, 0, 0) in colours


def test_animation_marker_moves_and_hides():
    frames = animate_tracks(tracks(), 40, 60)
    assert frames.shape == (8, 40, 60, 3)
    marker_b = [(frame == ENTITY_COLORS[1]).all(-1).sum() for frame in frames]
    assert marker_b[3] < marker_b[2]  # entity b is hidden in frame 3: no marker drawn
    assert not np.array_equal(frames[0], frames[1])


@pytest.mark.parametrize("suffix, shape", [(".png", (40, 60, 3)), (".gif", (8, 40, 60, 3)), (".mp4", (8, 40, 60, 3))])
def test_save_preview_formats(tmp_path, suffix, shape):
    path = tmp_path / f"preview{suffix}"
    save_preview(tracks(), path, height=40, width=60)
    assert iio.imread(path).shape[: len(shape)] == shape
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_preview_errors(tmp_path):
    with pytest.raises(InputError, match=r"preview format '.bmp' is not supported; use .png, .gif, .mp4"):
        save_preview(tracks(), tmp_path / "p.bmp", height=40, width=60)
    with pytest.raises(InputError, match="background image .* does not exist"):
        save_preview(tracks(), tmp_path / "p.png", height=40, width=60, background=tmp_path / "none.png")
    assert list(tmp_path.iterdir()) == []
