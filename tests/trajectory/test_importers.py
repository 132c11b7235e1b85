"""Tora .txt and .npy importers: literal expectations derived by hand from Tora's preprocessing."""

import numpy as np
import pytest

from tora2.errors import InputError
from tora2.trajectory import load_tracks, read_tora_txt, tora_resample, tracks_from_npy
from tora2.trajectory.importers import natural_size, tora_scale


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tora_resample_fewer_points_one_segment():
    # 3 points to insert in 1 segment: fractions 1/4, 2/4, 3/4 of 10 → 2.5, 5, 7.5 → int() → 2, 5, 7
    assert tora_resample([(0, 0), (10, 0)], 5) == [(0, 0), (2, 0), (5, 0), (7, 0), (10, 0)]


def test_tora_resample_spreads_the_remainder_over_the_first_segments():
    # 3 missing over 2 segments: n = 1, m = 1 → segment 0 gets 2, segment 1 gets 1.
    # seg 0: 1/3, 2/3 of (9, 3) → (3, 1), (6, 2); seg 1: 1/2 of (1, 7) from (9, 3) → (9.5, 6.5) → (9, 6)
    out = tora_resample([(0, 0), (9, 3), (10, 10)], 6)
    assert out == [(0, 0), (3, 1), (6, 2), (9, 3), (9, 6), (10, 10)]


def test_tora_resample_truncates_toward_zero_with_decreasing_coordinates():
    # from 10 down to 0 with 1 inserted point: 10 + 1/2 * (-10) = 5; from 7 to 0 in 2 steps: 7 - 7/3 = 4.67 → 4
    assert tora_resample([(10, 7), (0, 0)], 3) == [(10, 7), (5, 3), (0, 0)]
    assert tora_resample([(7, 0), (0, 0)], 4) == [(7, 0), (4, 0), (2, 0), (0, 0)]


def test_tora_resample_more_points_drops_the_last_raw_point():
    raw = [(i, 2 * i) for i in range(10)]
    # read_points: skip = 10 // 4 = 2 → indices 0, 2, 4, 6, 8 → first 4; process_points keeps them.
    assert tora_resample(raw, 4) == [(0, 0), (2, 4), (4, 8), (6, 12)]
    raw7 = [(i, 0) for i in range(7)]
    assert tora_resample(raw7, 3) == [(0, 0), (2, 0), (4, 0)]


def test_tora_resample_equal_length_is_unchanged():
    raw = [(3, 4), (5, 6), (7, 8)]
    assert tora_resample(raw, 3) == raw


def test_tora_scale_truncates():
    # 720 * 255 / 256 = 717.1875, 480 * 100 / 256 = 187.5, 720 * 1 / 256 = 2.8125
    np.testing.assert_array_equal(tora_scale([(255, 100), (1, 0)], 480, 720), [[717, 187], [2, 0]])


def test_tora_txt_end_to_end(tmp_path):
    path = write(tmp_path, "walk.txt", "0,0\n10,0\n")
    (track,) = load_tracks(path, num_frames=5, height=480, width=720)
    # points 0, 2, 5, 7, 10 → int(720 * x / 256) = 0, 5, 14, 19, 28
    np.testing.assert_array_equal(track.points[:, 0], [0, 5, 14, 19, 28])
    np.testing.assert_array_equal(track.points[:, 1], [0, 0, 0, 0, 0])
    assert track.id == "walk" and track.kind == "auto" and track.visible.all()
    assert track.points.dtype == np.float64


def test_tora_txt_errors(tmp_path):
    with pytest.raises(InputError, match=r"line 2: expected 'x,y'"):
        load_tracks(write(tmp_path, "a.txt", "1,2\n3\n"), num_frames=4, height=64, width=64)
    with pytest.raises(InputError, match="has 1 point"):
        load_tracks(write(tmp_path, "b.txt", "1,2\n"), num_frames=4, height=64, width=64)
    with pytest.raises(InputError, match=r"line 2: \(300, 5\) is outside Tora's 256x256 canvas .*--clip"):
        load_tracks(write(tmp_path, "c.txt", "1,2\n300,5\n"), num_frames=4, height=64, width=64)
    with pytest.raises(InputError, match="not finite"):
        load_tracks(write(tmp_path, "d.txt", "1,2\nnan,5\n"), num_frames=4, height=64, width=64)


def test_tora_txt_clip_clamps_with_a_warning(tmp_path):
    path = write(tmp_path, "c.txt", "0,0\n300,-5\n")
    with pytest.warns(UserWarning, match="clamped 1 point"):
        (track,) = load_tracks(path, num_frames=2, height=256, width=256, clip=True)
    np.testing.assert_array_equal(track.points, [[0, 0], [255, 0]])


def test_read_tora_txt_skips_blank_lines_and_truncates_floats(tmp_path):
    assert read_tora_txt(write(tmp_path, "e.txt", "1,2\n\n3.9,4\n")) == [(1, 2), (3, 4)]


def test_npy_single_and_multi_with_visibility(tmp_path):
    one = np.array([[0.0, 0.0], [10.0, 20.0], [20.0, 40.0]])
    np.save(tmp_path / "one.npy", one)
    (track,) = load_tracks(tmp_path / "one.npy", num_frames=3, height=64, width=64)
    np.testing.assert_array_equal(track.points, one)

    many = np.zeros((2, 3, 3))
    many[0, :, :2] = one
    many[1, :, :2] = one[::-1]
    many[:, :, 2] = [[1, 0, 1], [1, 1, 1]]
    np.save(tmp_path / "many.npy", many)
    tracks = load_tracks(tmp_path / "many.npy", num_frames=5, height=64, width=64)
    assert [t.id for t in tracks] == ["track0", "track1"]
    # resampled to 5 frames: times 0, 2, 4 → linear in between
    np.testing.assert_allclose(tracks[0].points, [[0, 0], [5, 10], [10, 20], [15, 30], [20, 40]])
    np.testing.assert_array_equal(tracks[0].visible, [True, True, False, False, True])


def test_npy_canvas_size_scales(tmp_path):
    np.save(tmp_path / "n.npy", np.array([[0.0, 0.0], [99.0, 49.0]]))
    (track,) = tracks_from_npy(tmp_path / "n.npy", num_frames=2, height=100, width=200, canvas_size=(100, 50))
    np.testing.assert_allclose(track.points, [[0, 0], [198, 98]])


def test_npy_errors(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match=r"shape \(2, 3, 4\).*expected numbers shaped \(T, 2\)"):
        load_tracks(tmp_path / "bad.npy", num_frames=3, height=8, width=8)
    arr = np.zeros((3, 2))
    arr[1, 0] = np.inf
    np.save(tmp_path / "inf.npy", arr)
    with pytest.raises(InputError, match=r"value at \[0, 1, 0\] is inf"):
        load_tracks(tmp_path / "inf.npy", num_frames=3, height=8, width=8)
    np.save(tmp_path / "out.npy", np.array([[0.0, 0.0], [8.0, 1.0]]))
    with pytest.raises(InputError, match=r"points\[1\] = \(8, 1\) is outside the canvas \(x in 0..7"):
        load_tracks(tmp_path / "out.npy", num_frames=3, height=8, width=8)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a readable .npy"):
        load_tracks(tmp_path / "junk.npy", num_frames=3, height=8, width=8)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"unknown track format '.csv'; use one of .json, .txt, .npy"):
        load_tracks(tmp_path / "a.csv", num_frames=3, height=8, width=8)
    with pytest.raises(InputError, match="does not exist"):
        load_tracks(tmp_path / "missing.json", num_frames=3, height=8, width=8)
    with pytest.raises(InputError, match="num_frames is 1"):
        load_tracks(tmp_path / "missing.txt", num_frames=1, height=8, width=8)


def test_natural_size(tmp_path):
    assert natural_size(write(tmp_path, "t.txt", "1,2\n3,4\n5,6\n")) == (3, 256, 256)
    np.save(tmp_path / "n.npy", np.zeros((2, 7, 2)))
    assert natural_size(tmp_path / "n.npy") == (7, None, None)
