"""Manifest parsing: defaults, seeds → units, per-job errors, manifest-level errors, JSONL."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tora2.batch.manifest import parse_manifest, read_manifest
from tora2.errors import InputError

REPO = Path(__file__).resolve().parents[2]
TRACKS = REPO / "examples" / "tracks"

SAMPLE_SIZE = (5, 32, 48)  # the model's (num_frames, height, width), used where a job sets none


def parse(data, **kwargs):
    return parse_manifest(data, sample_size=SAMPLE_SIZE, **kwargs)


LINE = {"points": [[0, 0], [40, 30]]}  # inline paths are in output pixels


def test_defaults_and_seeds_expand_to_units():
    manifest = parse({
        "defaults": {"height": 32, "width": 48, "num_frames": 5, "seeds": [7]},
        "jobs": [
            {"name": "a", "prompt": "a dot", "seeds": [0, 1], "entities": [{"text": "a dot", "path": LINE}]},
            {"name": "b", "prompt": "a star", "width": 64},
        ],
    })
    assert [j.id for j in manifest.jobs] == ["a:seed0", "a:seed1", "b:seed7"]
    assert [j.output for j in manifest.jobs] == ["a_seed0.mp4", "a_seed1.mp4", "b.mp4"]
    assert [j.index for j in manifest.jobs] == [0, 1, 2]
    a0, a1, b = manifest.jobs
    assert (a0.height, a0.width, a0.num_frames, a0.num_inference_steps, a0.guidance_scale) == (32, 48, 5, None, None)
    assert (b.height, b.width) == (32, 64)
    assert a0.entities[0].trajectory.shape == (5, 2)
    assert a0.fingerprint != a1.fingerprint and len(a0.fingerprint) == 16
    assert a0.shape == a1.shape != b.shape


def test_fingerprint_is_stable_and_follows_edits():
    data = {"jobs": [{"name": "a", "prompt": "a dot"}]}
    first = parse(data).jobs[0].fingerprint
    assert parse(json.loads(json.dumps(data))).jobs[0].fingerprint == first
    data["jobs"][0]["prompt"] = "a red dot"
    assert parse(data).jobs[0].fingerprint != first


def test_output_template_and_suffix():
    manifest = parse({"jobs": [{"name": "a", "prompt": "p", "seeds": [3, 4], "output": "clips/{seed}/video"}]})
    assert [j.output for j in manifest.jobs] == ["clips/3/video.mp4", "clips/4/video.mp4"]


@pytest.mark.parametrize("job, message", [
    ({"prompt": ""}, "prompt is missing or empty"),
    ({"prompt": "p", "height": 0}, "height = 0 is out of range; use 8..8192"),
    ({"prompt": "p", "width": 12.5}, "width must be a whole number; got 12.5"),
    ({"prompt": "p", "seeds": [1, 1]}, "seeds [1, 1] repeat a value"),
    ({"prompt": "p", "colour": "red"}, "unknown key(s) colour"),
    ({"prompt": "p", "entities": [{"text": "x", "image": "missing.png"}]}, "missing.png does not exist"),
    ({"prompt": "p", "entities": [{"text": "x", "kind": "robot"}]}, "kind 'robot' is not one of auto, human, object"),
    ({"prompt": "p", "entities": [{"path": LINE}]}, "text is missing"),
    ({"prompt": "p", "entities": [{"text": "x", "path": {"points": [[0, 0]]}}]}, "a path needs at least 2"),
    ({"prompt": "p", "entities": [{"text": "x", "path": "nowhere.json"}]}, "nowhere.json does not exist"),
    ({"prompt": "p", "output": "../escape"}, "must be a relative path inside --out"),
])
def test_a_bad_job_is_recorded_and_the_others_stay(job, message, tmp_path):
    manifest = parse({"jobs": [{"name": "good", "prompt": "fine"}, {"name": "bad", **job}]}, base=tmp_path)
    good, bad = manifest.jobs
    assert good.error is None and good.id == "good:seed0"
    assert bad.id == "bad" and bad.output is None
    assert message in bad.error
    assert "\n" not in bad.error
    assert bad.error.startswith("manifest, job 'bad'")
    assert [j.id for j in manifest.valid] == ["good:seed0"]


def test_path_from_track_file_fills_text_and_kind():
    def job(*entities):
        data = {"defaults": {"num_frames": 49, "height": 48, "width": 72},
                "jobs": [{"name": "a", "prompt": "a cat and a girl", "entities": list(entities)}]}
        return parse(data).jobs[0]

    ok = job(
        {"path": f"{TRACKS}/two_entities.json#girl", "image": None},  # null: no reference image
        {"text": "a circle", "path": f"{TRACKS}/tora_circle.txt"},
        {"path": f"{TRACKS}/two_entities.json#1", "kind": "auto", "image": None},
    )
    assert ok.error is None, ok.error
    girl, circle, cat = ok.entities
    assert (girl.text, girl.kind, girl.image) == ("a girl in a red coat", "human", None)
    assert (cat.text, cat.kind) == ("a girl in a red coat", "auto")
    np.testing.assert_allclose(girl.trajectory[0], [600 * 72 / 720, 140 * 48 / 480])
    assert circle.trajectory.shape == (49, 2) and circle.visible.all()
    # the track file names cat.png, which the examples folder does not have
    bad = job({"path": f"{TRACKS}/two_entities.json#cat"})
    assert bad.error == (f"manifest, job 'a', entities[0]: the track file names image {TRACKS}/cat.png, "
                         "which does not exist; fix it or set image here")


def test_track_file_selector_errors():
    base = {"defaults": {"num_frames": 49}}
    manifest = parse({**base, "jobs": [
        {"name": "a", "prompt": "p", "entities": [{"path": f"{TRACKS}/two_entities.json#dog"}]},
        {"name": "b", "prompt": "p", "entities": [{"path": f"{TRACKS}/two_entities.json"}]},
    ]})
    assert "has no entity 'dog'; its entities are cat, girl" in manifest.jobs[0].error
    assert "holds 2 entities (cat, girl); pick one with" in manifest.jobs[1].error


def test_keyframes_past_the_clip_are_a_job_error():
    manifest = parse({"jobs": [{"name": "a", "prompt": "p", "num_frames": 9,
                                         "entities": [{"path": f"{TRACKS}/two_entities.json#cat"}]}]})
    assert "past the last frame 8" in manifest.jobs[0].error


@pytest.mark.parametrize("data, message", [
    ({"jobs": []}, "needs a non-empty 'jobs' list"),
    ({"jobs": [{"prompt": "p"}], "extra": 1}, "unknown top-level key(s) extra"),
    ({"jobs": [{"prompt": "p"}], "defaults": {"name": "x"}}, "defaults has unknown or per-job key(s) name"),
    ({"jobs": [{"prompt": "p"}], "version": 2}, "version 2 is not supported"),
    ({"jobs": [{"name": "a", "prompt": "p"}, {"name": "a", "prompt": "q"}]}, "job name 'a' is used twice"),
    ({"jobs": [{"name": "a", "prompt": "p", "output": "x"}, {"name": "b", "prompt": "q", "output": "x.mp4"}]},
     "jobs 'a:seed0' and 'b:seed0' both write x.mp4"),
])
def test_manifest_level_errors(data, message):
    with pytest.raises(InputError, match=None) as info:
        parse(data)
    assert message in str(info.value)


def test_read_yaml_and_jsonl_agree(tmp_path):
    data = {"defaults": {"num_frames": 5, "seeds": [0, 2]},
            "jobs": [{"name": "a", "prompt": "a dot", "entities": [{"text": "a dot", "path": LINE}]},
                     {"name": "b", "prompt": "two dots"}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
    header = json.dumps({"defaults": data["defaults"]})
    (tmp_path / "m.jsonl").write_text("\n".join([header, *(json.dumps(j) for j in data["jobs"])]) + "\n")
    from_yaml = read_manifest(tmp_path / "m.yaml", SAMPLE_SIZE)
    from_jsonl = read_manifest(tmp_path / "m.jsonl", SAMPLE_SIZE)
    assert [(j.id, j.fingerprint, j.output) for j in from_yaml.jobs] == [(j.id, j.fingerprint, j.output) for j in from_jsonl.jobs]
    assert len(from_yaml.jobs) == 4


def test_relative_paths_resolve_against_the_manifest(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dot.png").write_bytes(b"not checked here")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"jobs": [{"prompt": "p", "entities": [{"text": "x", "image": "sub/dot.png"}]}]}))
    job = read_manifest(tmp_path / "m.yaml", SAMPLE_SIZE).jobs[0]
    assert job.error is None
    assert job.entities[0].image == str(tmp_path / "sub" / "dot.png")
    assert job.id == "job001:seed0"


@pytest.mark.parametrize("name, text, message", [
    ("m.toml", "", "unknown format '.toml'"),
    ("m.yaml", "jobs: [", "is not valid YAML"),
    ("m.yaml", "- a\n- b\n", "must be a mapping with a 'jobs' list; got list"),
    ("m.jsonl", '{"prompt": "p"}\n{"prompt": \n', "line 2: not valid JSON"),
])
def test_unreadable_manifests(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as info:
        read_manifest(tmp_path / name)
    assert message in str(info.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(tmp_path / "none.yaml")


def test_sizes_come_from_the_model_or_must_be_set():
    job = parse({"jobs": [{"prompt": "p", "num_frames": 9}]}).jobs[0]
    assert (job.num_frames, job.height, job.width, job.fps) == (9, 32, 48, 8.0)
    unset = parse_manifest({"jobs": [{"name": "a", "prompt": "p", "width": 16}]}).jobs[0]
    assert unset.error == "manifest, job 'a': height is not set; set it in the job or in defaults"
