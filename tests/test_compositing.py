"""tora2.compositing.paste_sprite: the coverage channel of a 4-channel frame ("over")."""

import numpy as np
import pytest

from tora2.compositing import paste_sprite


def test_a_fourth_channel_gets_the_coverage_and_colours_match_a_three_channel_frame():
    sprite = np.zeros((6, 6, 4), np.uint8)
    sprite[..., :3] = (200, 40, 10)
    sprite[..., 3] = 255
    half = sprite.copy()
    half[..., 3] = 128
    three = np.full((20, 20, 3), 100.0, np.float32)
    four = np.concatenate([np.full((20, 20, 3), 100.0, np.float32), np.zeros((20, 20, 1), np.float32)], axis=2)
    for frame in (three, four):
        paste_sprite(frame, sprite, (6.5, 6.5), 6.0, 0.0)
        paste_sprite(frame, half, (8.5, 6.5), 6.0, 0.0)
    np.testing.assert_array_equal(four[..., :3], three)
    assert four[6, 4, 3] == pytest.approx(1.0)  # only the opaque sprite
    assert four[6, 10, 3] == pytest.approx(128 / 255, abs=1e-3)  # only the half-transparent one
    assert four[6, 7, 3] == pytest.approx(1.0)  # both: 0.5 over 1 is 1
    assert four[15, 15, 3] == 0.0
