"""Interpolation: literal values, and hypothesis properties for parsing and resampling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tora2.errors import InputError
from tora2.trajectory import interpolate_keyframes, load_tracks, resample_points, tora_resample, tracks_from_json, write_track_json
from tora2.trajectory.interpolate import ease

XY = np.array([[0.0, 0.0], [10.0, 20.0], [30.0, 20.0]])


def test_linear_literal():
    out = interpolate_keyframes([0, 2, 4], XY, 6)
    np.testing.assert_allclose(out, [[0, 0], [5, 10], [10, 20], [20, 20], [30, 20], [30, 20]])  # holds after the end


def test_hold_literal():
    out = interpolate_keyframes([1, 3, 4], XY, 6, "hold")
    np.testing.assert_array_equal(out[:, 0], [0, 0, 0, 10, 30, 30])  # holds before the start too


def test_smooth_hits_keyframes_and_is_linear_for_two():
    out = interpolate_keyframes([0, 2, 4], XY, 5, "smooth")
    np.testing.assert_allclose(out[[0, 2, 4]], XY)
    # Catmull-Rom tangents at t=0: (10, 20)/2, at t=2: (30, 20)/4; Hermite at u=1/2 with dt=2:
    # x = (0 + 10)/2 + (5 - 7.5) * 2 / 8 = 4.375
    assert out[1, 0] == pytest.approx(4.375)
    two = interpolate_keyframes([0, 4], XY[:2], 5, "smooth")
    np.testing.assert_allclose(two, interpolate_keyframes([0, 4], XY[:2], 5, "linear"))


def test_easing_literal():
    u = np.array([0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(ease(u, "in"), [0, 1 / 64, 1 / 8, 1])
    np.testing.assert_allclose(ease(u, "out"), [0, 1 - 27 / 64, 7 / 8, 1])
    np.testing.assert_allclose(ease(u, "in_out"), [0, 1 / 16, 0.5, 1])
    out = interpolate_keyframes([0, 4], XY[:2], 5, easing="in")
    np.testing.assert_allclose(out[:, 0], [0, 10 / 64, 10 / 8, 10 * 27 / 64, 10])


def test_unknown_interpolation():
    with pytest.raises(ValueError, match="interpolation must be one of linear, smooth, hold; got 'cubic'"):
        interpolate_keyframes([0, 1], XY[:2], 2, "cubic")


def test_resample_points_literal():
    np.testing.assert_allclose(resample_points(XY, 5), [[0, 0], [5, 10], [10, 20], [20, 20], [30, 20]])
    np.testing.assert_array_equal(resample_points(XY, 3), XY)


coords = st.floats(0, 255, allow_nan=False, allow_infinity=False)
point_lists = st.lists(st.tuples(coords, coords), min_size=2, max_size=40)


@settings(max_examples=60, deadline=None)
@given(points=point_lists, num_frames=st.integers(2, 60),
       interpolation=st.sampled_from(["linear", "smooth", "hold"]), easing=st.sampled_from(["none", "in", "out", "in_out"]))
def test_resample_keeps_endpoints_and_length(points, num_frames, interpolation, easing):
    out = resample_points(np.array(points), num_frames, interpolation, easing)
    assert out.shape == (num_frames, 2)
    np.testing.assert_allclose(out[0], points[0], atol=1e-9)
    np.testing.assert_allclose(out[-1], points[-1], atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(1, 6), min_size=1, max_size=8), data=st.data())
def test_keyframes_endpoints_and_linear_stays_in_the_hull(steps, data):
    times = np.concatenate([[0], np.cumsum(steps)]).astype(float)
    xy = np.array(data.draw(st.lists(st.tuples(coords, coords), min_size=len(times), max_size=len(times))))
    num_frames = int(times[-1]) + 1
    out = interpolate_keyframes(times, xy, num_frames, "linear")
    assert out.shape == (num_frames, 2)
    np.testing.assert_allclose(out[times.astype(int)], xy, atol=1e-9)  # every keyframe is hit at its time
    assert (out >= xy.min(0) - 1e-9).all() and (out <= xy.max(0) + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(times=st.lists(st.integers(0, 30), min_size=2, max_size=8))
def test_parser_accepts_exactly_strictly_increasing_times(times):
    data = {"canvas": {"width": 64, "height": 64},
            "path": {"keyframes": [{"t": t, "xy": [1, 1]} for t in times]}}
    increasing = all(b > a for a, b in zip(times, times[1:]))
    if increasing:
        (track,) = tracks_from_json(data, num_frames=31, height=64, width=64)
        assert track.points.shape == (31, 2)
    else:
        with pytest.raises(InputError, match="keyframe times must strictly increase"):
            tracks_from_json(data, num_frames=31, height=64, width=64)


int_points = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=2, max_size=80)


@settings(max_examples=40, deadline=None)
@given(points=int_points, num_frames=st.integers(2, 60))
def test_tora_resample_properties(points, num_frames):
    out = tora_resample(points, num_frames)
    assert len(out) == num_frames
    assert out[0] == points[0]
    if len(points) <= num_frames:
        assert out[-1] == points[-1]
        it = iter(out)
        assert all(p in it for p in points)  # the raw points survive, in order


@settings(max_examples=25, deadline=None)
@given(points=int_points, num_frames=st.integers(2, 50), height=st.integers(2, 900), width=st.integers(2, 900))
def test_round_trip_txt_json_points(tmp_path_factory, points, num_frames, height, width):
    folder = tmp_path_factory.mktemp("rt")
    txt = folder / "path.txt"
    txt.write_text("".join(f"{x},{y}\n" for x, y in points))
    tracks = load_tracks(txt, num_frames=num_frames, height=height, width=width)
    write_track_json(tracks, folder / "track.json", height=height, width=width)
    back = load_tracks(folder / "track.json", num_frames=num_frames, height=height, width=width)
    np.testing.assert_array_equal(back[0].points, tracks[0].points)
    assert back[0].id == "path"
