"""The studio's server-side functions (cli/studio/app.py) without a browser."""

import json
import shutil

import pytest

pytest.importorskip("gradio", reason="the studio extra is installed by make install")

from cli.studio import app  # noqa: E402
from tora2.errors import InputError  # noqa: E402
from tora2.scenes import SceneEntity  # noqa: E402

from pathlib import Path  # noqa: E402

STAR = Path(__file__).resolve().parents[2] / "examples" / "entities" / "yellow_star.png"
SIZES = dict(num_frames=9, height=64, width=64, fps=8.0)
EMPTY_SLOT = (None, "", "auto", 0, 8, "none", "linear")


def canvas(points):
    return app.canvas_value(json.dumps({"entities": [{"points": points}]}), 2, 64, 64, None, ["a star", ""])


def test_uploads_are_checked_for_type_size_and_content(tmp_path):
    folder = app.session_folder(None, tmp_path)
    with pytest.raises(InputError, match=r"notes.txt: a photo must be one of \.png"):
        (tmp_path / "notes.txt").write_text("x")
        app.keep_upload(str(tmp_path / "notes.txt"), folder, app.IMAGE_SUFFIXES, "photo")
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(app.MAX_UPLOAD_BYTES + 1)
    with pytest.raises(InputError, match="big.png is 20.0 MB; the studio takes files up to 20 MB"):
        app.keep_upload(str(big), folder, app.IMAGE_SUFFIXES, "photo")
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(InputError, match="fake.png is not an image this studio can read"):
        app.keep_upload(str(fake), folder, app.IMAGE_SUFFIXES, "photo")
    kept = app.keep_upload(str(STAR), folder, app.IMAGE_SUFFIXES, "photo")
    assert Path(kept).parent == Path(folder) and Path(kept).read_bytes() == STAR.read_bytes()
    app.remove_folder(folder)
    assert not Path(folder).exists()  # the session's files go with the session


def test_canvas_value_carries_points_names_and_colours():
    value = json.loads(canvas([[1, 2], [3, 4]]))
    assert [e["label"] for e in value["entities"]] == ["a star", "entity 2"]
    assert value["entities"][0]["points"] == [[1, 2], [3, 4]] and value["entities"][1]["points"] == []
    assert value["entities"][0]["color"] != value["entities"][1]["color"]
    assert "replace_points" not in value


def test_scene_checks_use_the_track_reader():
    with pytest.raises(InputError, match="add an entity"):
        app.validate_scene(canvas([]), SIZES, [EMPTY_SLOT, EMPTY_SLOT])
    with pytest.raises(InputError, match="draw at least 2 points"):
        app.validate_scene(canvas([[4, 4]]), SIZES, [(None, "a star", "auto", 0, 8, "none", "linear"), EMPTY_SLOT])
    data, tracks, entities = app.validate_scene(canvas([[4, 32], [60, 32]]), SIZES,
                                                [(None, "a star", "auto", 0, 8, "none", "linear"), EMPTY_SLOT])
    assert len(tracks) == 1 and entities[0].text == "a star" and data["canvas"] == {"width": 64, "height": 64}


def test_previews_are_animations_of_the_paths_and_the_flow(tmp_path):
    _, tracks, _ = app.validate_scene(canvas([[4, 32], [60, 32]]), SIZES, [(None, "a star", "auto", 0, 8, "none", "linear"),
                                                                           EMPTY_SLOT])
    paths, flow = app.preview_gifs(tracks, SIZES, None, str(tmp_path))
    import imageio.v3 as iio

    assert iio.imread(paths).shape[0] == 9 and iio.imread(flow).shape[0] == 9


@pytest.mark.slow
def test_generate_job_writes_video_track_sidecar_and_manifest_line(tmp_path, monkeypatch):
    from entities.generation import GenerationBackend
    from tora2.batch.manifest import parse_manifest

    monkeypatch.setenv("TORA2_CACHE", str(tmp_path / "cache"))
    folder = app.session_folder(None, tmp_path)
    image = app.keep_upload(str(STAR), folder, app.IMAGE_SUFFIXES, "photo")
    slots = [(image, "a yellow star", "auto", 0, 8, "none", "linear"), EMPTY_SLOT]
    out = app.generate_job(GenerationBackend(None), folder, canvas([[4, 32], [60, 32]]), SIZES,
                           "a yellow star moves right", 2, 1, None, slots)
    assert all(Path(p).is_file() for p in out.values())
    sidecar = json.loads(Path(out["sidecar"]).read_text())
    assert sidecar["seed"] == 1 and sidecar["entities"][0]["text"] == "a yellow star"
    line = json.loads(Path(out["manifest"]).read_text())
    job = parse_manifest({"jobs": [line]}, base=Path(out["manifest"]).parent).jobs[0]
    assert job.error is None and job.entities[0].image == image
    shutil.rmtree(folder)


def test_a_photo_is_prepared_into_a_session_entity_folder_with_an_optional_box(tmp_path, monkeypatch):
    from entities.prepare import load_prepared

    monkeypatch.setenv("TORA2_CACHE", str(tmp_path / "cache"))
    folder = app.session_folder(None, tmp_path)
    prepared, entity_dir = app.prepare_photo(str(STAR), folder, "a star", "auto", "")
    assert Path(entity_dir).parent == Path(folder) and load_prepared(entity_dir).kind == prepared.kind
    boxed, _ = app.prepare_photo(str(STAR), folder, "a star", "object", "10,10,70,70")
    assert boxed.kind == "object" and boxed.mask.shape == prepared.mask.shape
    with pytest.raises(InputError, match="box '1,2' must be 4 comma-separated numbers"):
        app.prepare_photo(str(STAR), folder, "a star", "auto", "1,2")


def test_canvas_settings_are_checked_like_generate_flags():
    assert app.settings(9, 64, 64, 8) == SIZES
    with pytest.raises(InputError, match="must all be set"):
        app.settings(None, 64, 64, 8)
    with pytest.raises(InputError, match="--fps = 0 is out of range"):
        app.settings(9, 64, 64, 0)
