"""tora2.scenes: the studio's scene ↔ track.json, validation, loading back, manifest line, phrases."""

import json

import numpy as np
import pytest

from tora2.batch.manifest import parse_manifest
from tora2.errors import InputError
from tora2.scenes import SceneEntity, manifest_line, prompt_phrases, scene_from_file, scene_track_json, scene_tracks

SIZES = dict(num_frames=9, height=64, width=64, fps=8.0)


def cat(**changes):
    return SceneEntity(**{"id": "entity1", "text": "a cat", "points": [[8, 32], [56, 32]], **changes})


def test_points_become_keyframes_spread_over_the_visible_frames():
    data = scene_track_json([cat(), SceneEntity(id="entity2", text="a dog", points=[[32, 8], [32, 40], [32, 56]],
                                                start=2, end=6, easing="in_out")],
                            width=64, height=64, num_frames=9, fps=8.0)
    first, second = scene_tracks(data, **SIZES)
    np.testing.assert_allclose(first.points[:, 0], np.linspace(8, 56, 9))
    assert first.visible.all()
    assert second.visible.tolist() == [False, False, True, True, True, True, True, False, False]
    np.testing.assert_allclose(second.points[2], [32, 8])  # appears at its first point
    np.testing.assert_allclose(second.points[6], [32, 56])  # leaves from its last
    np.testing.assert_allclose(second.points[4], [32, 40])  # the middle keyframe is hit exactly


def test_a_repeated_point_is_a_pause():
    (track,) = scene_tracks(scene_track_json([cat(points=[[8, 32], [32, 32], [32, 32], [56, 32]])], width=64, height=64,
                                             num_frames=10, fps=8.0), **{**SIZES, "num_frames": 10})
    steps = np.abs(np.diff(track.points[:, 0]))
    assert steps.min() == 0 and steps.max() > 0  # it stands still for a while, then goes on


@pytest.mark.parametrize("changes, message", [
    ({"points": [[8, 32]]}, "draw at least 2 points"),
    ({"start": 5, "end": 3}, "appears at frame 5 and disappears after frame 3"),
    ({"end": 9}, "use 0 ≤ appear < disappear ≤ 8"),
    ({"easing": "bounce"}, "easing 'bounce' is not one of"),
])
def test_bad_scenes_are_one_line_errors(changes, message):
    with pytest.raises(InputError, match=message):
        scene_track_json([cat(**changes)], width=64, height=64, num_frames=9, fps=8.0)


def test_outside_the_canvas_is_refused_by_the_track_reader():
    with pytest.raises(InputError, match="outside"):
        scene_tracks(scene_track_json([cat(points=[[8, 32], [90, 32]])], width=64, height=64, num_frames=9, fps=8.0), **SIZES)


def test_a_saved_track_json_loads_back(tmp_path):
    path = tmp_path / "track.json"
    path.write_text(json.dumps(scene_track_json([cat(start=1, end=7)], width=64, height=64, num_frames=9, fps=8.0)))
    (entity,) = scene_from_file(path, **SIZES)
    assert (entity.text, entity.start, entity.end, len(entity.points)) == ("a cat", 1, 7, 7)
    np.testing.assert_allclose(entity.points[0], [8, 32])
    np.testing.assert_allclose(entity.points[-1], [56, 32])


def test_a_tora_txt_and_a_manifest_line_load_back(tmp_path):
    txt = tmp_path / "circle.txt"
    txt.write_text("\n".join(f"{x},{y}" for x, y in [(10, 10), (128, 128), (240, 240)]))
    (entity,) = scene_from_file(txt, **SIZES)
    assert entity.text == "entity 1" and len(entity.points) == 9
    track = tmp_path / "track.json"
    track.write_text(json.dumps(scene_track_json([cat()], width=64, height=64, num_frames=9, fps=8.0)))
    line = manifest_line("a cat walks", [cat()], "track.json", steps=2, guidance=None, seed=3, **SIZES)
    (tmp_path / "job.jsonl").write_text(line + "\n")
    (loaded,) = scene_from_file(tmp_path / "job.jsonl", **SIZES)
    assert loaded.text == "a cat"
    job = parse_manifest({"jobs": [json.loads(line)]}, base=tmp_path).jobs[0]
    assert job.error is None and job.seed == 3 and job.num_inference_steps == 2 and job.entities[0].text == "a cat"


def test_prompt_phrases_highlight_and_flag_missing():
    pieces = prompt_phrases("A ginger cat chases a ball", ["a ginger cat", "a ball", "a dog"])
    assert pieces[0] == ("A ginger cat", "entity1")
    assert ("a ball", "entity2") in pieces
    assert pieces[-1] == ("  [missing: 'a dog']", "missing")
