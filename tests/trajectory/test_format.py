"""track.json: parsing, every validation error, resolution to the output video, write → read."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from tora2.errors import InputError
from tora2.trajectory import Track, load_tracks, tracks_from_json, write_track_json
from tora2.trajectory.format import SCHEMA_PATH

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tracks"


def two_entities(**path_overrides):
    path_a = {"points": [[0, 0], [10, 5], [20, 10]]}
    path_a.update(path_overrides)
    return {
        "canvas": {"width": 100, "height": 50},
        "entities": [
            {"id": "a", "text": "a cat", "image": "cat.png", "kind": "object", "path": path_a},
            {"id": "b", "path": {"keyframes": [{"t": 0, "xy": [99, 49]}, {"t": 2, "xy": [49, 29]}]}},
        ],
    }


def resolve(data, **kwargs):
    options = dict(num_frames=3, height=50, width=100)
    options.update(kwargs)
    return tracks_from_json(data, **options)


def test_two_entities_resolve():
    a, b = resolve(two_entities())
    assert (a.id, a.text, a.image, a.kind) == ("a", "a cat", "cat.png", "object")
    assert (b.id, b.text, b.image, b.kind) == ("b", None, None, "auto")
    np.testing.assert_array_equal(a.points, [[0, 0], [10, 5], [20, 10]])
    np.testing.assert_array_equal(b.points, [[99, 49], [74, 39], [49, 29]])
    assert a.visible.tolist() == [True, True, True]


def test_scaling_to_the_output_size_and_normalized_canvas():
    (a, _) = resolve(two_entities(), height=100, width=200)
    np.testing.assert_array_equal(a.points, [[0, 0], [20, 10], [40, 20]])
    data = {"canvas": "normalized", "path": {"points": [[0, 0], [0.5, 1.0]]}}
    (track,) = resolve(data, num_frames=2, height=11, width=21)
    np.testing.assert_array_equal(track.points, [[0, 0], [10, 10]])  # 0 and 1 = first and last pixel centres
    assert track.id == "entity0"


def test_keyframes_in_seconds_use_the_file_fps():
    data = {
        "canvas": {"width": 100, "height": 100},
        "fps": 2,
        "path": {"keyframes": [{"t": 0, "xy": [0, 0]}, {"t": 1.5, "xy": [30, 60]}], "time_unit": "second"},
    }
    (track,) = resolve(data, num_frames=4, height=100, width=100, fps=100.0)
    np.testing.assert_allclose(track.points, [[0, 0], [10, 20], [20, 40], [30, 60]])


def test_keyframe_visibility_and_hold():
    data = {
        "canvas": {"width": 10, "height": 10},
        "path": {
            "keyframes": [{"t": 0, "xy": [0, 0]}, {"t": 2, "xy": [4, 4], "visible": False}, {"t": 3, "xy": [8, 8]}],
            "interpolation": "hold",
        },
    }
    (track,) = resolve(data, num_frames=5, height=10, width=10)
    np.testing.assert_array_equal(track.points[:, 0], [0, 0, 4, 8, 8])
    assert track.visible.tolist() == [True, True, False, True, True]


def test_per_point_visibility():
    (a, _) = resolve(two_entities(visible=[True, False, True]))
    assert a.visible.tolist() == [True, False, True]


def test_paths_list_matched_to_entities_in_order():
    data = {
        "canvas": {"width": 10, "height": 10},
        "entities": [{"id": "x"}, {"id": "y"}],
        "paths": [{"points": [[0, 0], [1, 1]]}, {"points": [[2, 2], [3, 3]]}],
    }
    x, y = resolve(data, num_frames=2, height=10, width=10)
    assert (x.id, y.id) == ("x", "y")
    np.testing.assert_array_equal(y.points, [[2, 2], [3, 3]])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("canvas"), "missing field canvas"),
        (lambda d: d.update(canvas={"width": 10}), "canvas must be"),
        (lambda d: d.update(colour="red"), r"unknown field\(s\) colour; allowed: version, canvas"),
        (lambda d: d["entities"][0].pop("path"), r"entities\[0\] is missing field path"),
        (lambda d: d["entities"][0].update(kind="animal"), r"entity 'a': kind is 'animal'; allowed: auto, human, object"),
        (lambda d: d["entities"][1].update(id="a"), "entity 'a': the id is used twice"),
        (lambda d: d["entities"][0]["path"].update(points=[[1, 1]]), "points has 1 point.*at least 2"),
        (lambda d: d["entities"][0]["path"].update(points=[[1, 1], [2, float("nan")]]), r"points\[1\]\[1\] is nan"),
        (lambda d: d["entities"][0]["path"].update(points=[[1, 1], [2, float("inf")]]), r"points\[1\]\[1\] is inf"),
        (lambda d: d["entities"][0]["path"].update(points=[[1, 1], [2, "3"]]), r"points\[1\]\[1\] must be a number; got str"),
        (lambda d: d["entities"][0]["path"].update(points=[[1, 1], [100, 3]]), r"entity 'a': points\[1\] = \(100, 3\) is outside the canvas \(x in 0..99, y in 0..49"),
        (lambda d: d["entities"][0]["path"].update(visible=[True]), "visible has 1 values for 3 points"),
        (lambda d: d["entities"][0]["path"].update(interpolation="cubic"), "interpolation is 'cubic'; allowed: linear, smooth, hold"),
        (lambda d: d["entities"][0]["path"].update(keyframes=[]), "exactly one of points or keyframes; found both"),
        (lambda d: d["entities"][1]["path"]["keyframes"][1].update(t=0), r"entity 'b': keyframes\[1\].t = 0 does not come after keyframes\[0\].t = 0"),
        (lambda d: d["entities"][1]["path"]["keyframes"][1].pop("xy"), r"keyframes\[1\] is missing field xy"),
        (lambda d: d["entities"][1]["path"]["keyframes"][1].update(t=7), "last keyframe t = 7 is past the last frame 2 of a 3-frame video"),
        (lambda d: d.update(paths=[{"points": [[0, 0], [1, 1]]}]), r"1 path\(s\) for 2 entities"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
    ],
)
def test_validation_errors_are_one_line(mutate, message):
    data = two_entities()
    mutate(data)
    with pytest.raises(InputError, match=message) as info:
        resolve(data)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("track.json")


def test_more_paths_than_entities():
    data = {"canvas": {"width": 10, "height": 10}, "entities": [{"id": "x"}], "paths": [{"points": [[0, 0], [1, 1]]}] * 2}
    with pytest.raises(InputError, match=r"2 path\(s\) for 1 entity; give one path per entity"):
        resolve(data, num_frames=2, height=10, width=10)


def test_clip_clamps_with_a_warning():
    data = two_entities(points=[[-5, 0], [10, 5], [120, 60]])
    with pytest.warns(UserWarning, match="clamped 2 point"):
        (a, _) = resolve(data, clip=True)
    np.testing.assert_array_equal(a.points, [[0, 0], [10, 5], [99, 49]])


def test_not_json_names_line_and_column(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"canvas": \n  oops}')
    with pytest.raises(InputError, match=r"t.json: not valid JSON \(Expecting value at line 2 column 3\)"):
        load_tracks(path, num_frames=3, height=8, width=8)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="the top level must be a JSON object; got list"):
        load_tracks(path, num_frames=3, height=8, width=8)


def test_write_then_load_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    tracks = [
        Track("a", "a cat", None, "object", rng.uniform((0, 0), (63, 31), size=(7, 2)), np.ones(7, bool)),
        Track("b", None, "/abs/dog.png", "human", rng.uniform((0, 0), (31, 31), size=(7, 2)), np.arange(7) % 3 != 0),
    ]
    path = tmp_path / "out.json"
    write_track_json(tracks, path, height=32, width=64)
    back = load_tracks(path, num_frames=7, height=32, width=64)
    for before, after in zip(tracks, back):
        assert (after.id, after.text, after.image, after.kind) == (before.id, before.text, before.image, before.kind)
        np.testing.assert_array_equal(after.points, before.points)
        np.testing.assert_array_equal(after.visible, before.visible)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp files left behind
    jsonschema.validate(json.loads(path.read_text()), json.loads(SCHEMA_PATH.read_text()))


def test_relative_images_resolve_against_the_track_file():
    cat, girl = load_tracks(EXAMPLES / "two_entities.json", num_frames=49, height=480, width=720)
    assert cat.image == str(EXAMPLES / "cat.png") and girl.kind == "human"
    np.testing.assert_array_equal(cat.points[[0, 16, 32, 48]], [[80, 360], [260, 300], [460, 340], [640, 280]])


@pytest.mark.parametrize("name", ["two_entities.json", "three_entities.json"])
def test_examples_match_the_schema(name):
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads((EXAMPLES / name).read_text()), schema)


def test_schema_rejects_what_the_parser_rejects():
    schema = json.loads(SCHEMA_PATH.read_text())
    bad = [two_entities(), two_entities(), two_entities()]
    bad[0]["entities"][0]["kind"] = "animal"
    bad[1]["entities"][0]["path"]["points"] = [[1, 1]]
    bad[2]["colour"] = "red"
    for data in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)
        with pytest.raises(InputError):
            resolve(data)
