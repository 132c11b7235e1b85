"""``tora2 track ...`` driven through the real Typer app: exit codes, messages, files."""

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from typer.testing import CliRunner

from cli.main import app
from tora2.trajectory import load_tracks, render_flow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tracks"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["track", *map(str, args)])


def test_validate_ok_with_the_files_own_size():
    result = run("validate", EXAMPLES / "two_entities.json")
    assert result.exit_code == 0, result.output
    assert "ok:" in result.stdout and "2 entities, 49 frames at 480x720 (HxW)" in result.stdout
    assert "cat: kind=object text='a ginger cat' from (80.0, 360.0) to (640.0, 280.0)" in result.stdout


def test_validate_reports_hidden_frames():
    result = run("validate", EXAMPLES / "three_entities.json", "--frames", 49, "--height", 480, "--width", 720)
    assert result.exit_code == 0, result.output
    assert "bird: kind=object" in result.stdout and "hidden in 12 frame(s)" in result.stdout


def test_validate_bad_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"canvas": {"width": 10, "height": 10},
                               "entities": [{"id": "x", "path": {"points": [[1, 1], [20, 1]]}}]}))
    result = run("validate", bad)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "entity 'x': points[1] = (20, 1) is outside the canvas" in result.stderr
    assert "Traceback" not in result.output


def test_validate_clip_warns_and_succeeds(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"canvas": {"width": 10, "height": 10}, "path": {"points": [[1, 1], [20, 1]]}}))
    result = run("validate", bad, "--clip")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "clamped 1 point(s)" in result.stderr


def test_validate_not_json_and_missing(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{")
    result = run("validate", bad)
    assert result.exit_code == 2 and "not valid JSON" in result.stderr
    result = run("validate", tmp_path / "missing.json")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_validate_normalized_canvas_needs_a_size():
    result = run("validate", EXAMPLES / "three_entities.json")
    assert result.exit_code == 2
    assert "has no pixel canvas" in result.stderr and "--height and --width" in result.stderr


def test_convert_txt_round_trips(tmp_path):
    out = tmp_path / "track.json"
    size = ["--frames", 49, "--height", 480, "--width", 720]
    result = run("convert", EXAMPLES / "tora_circle.txt", EXAMPLES / "tora_circle.txt", "-o", out, *size)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["canvas"] == {"width": 720, "height": 480}
    assert [e["id"] for e in data["entities"]] == ["tora_circle", "tora_circle_1"]
    direct = load_tracks(EXAMPLES / "tora_circle.txt", num_frames=49, height=480, width=720)[0].points
    back = load_tracks(out, num_frames=49, height=480, width=720)
    np.testing.assert_array_equal(back[0].points, direct)


def test_convert_refuses_other_outputs_and_leaves_nothing(tmp_path):
    result = run("convert", EXAMPLES / "tora_circle.txt", "-o", tmp_path / "track.yaml")
    assert result.exit_code == 2 and "must end in .json" in result.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2\n")
    result = run("convert", bad, "-o", tmp_path / "track.json")
    assert result.exit_code == 2 and "needs at least 2" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


def test_render_joint_and_one_entity(tmp_path):
    size = ["--frames", 9, "--height", 48, "--width", 72]
    joint, one = tmp_path / "flow.npy", tmp_path / "cat.npy"
    result = run("render", EXAMPLES / "two_entities.json", "-o", joint, "--height", 96, "--width", 144)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "(49, 96, 144, 2) float32" in result.stdout
    flow = np.load(joint)
    assert flow.shape == (49, 96, 144, 2) and flow.dtype == np.float32
    tracks = load_tracks(EXAMPLES / "two_entities.json", num_frames=49, height=96, width=144)
    np.testing.assert_array_equal(flow, render_flow([t.points for t in tracks], 96, 144, visible=[t.visible for t in tracks]))

    data = {"canvas": {"width": 72, "height": 48}, "entities": [
        {"id": "cat", "path": {"points": [[1, 1], [70, 40]]}}, {"id": "dog", "path": {"points": [[70, 1], [1, 40]]}}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    result = run("render", path, "-o", one, "--entity", "dog", *size)
    assert result.exit_code == 0, result.output
    dog = load_tracks(path, num_frames=9, height=48, width=72)[1]
    np.testing.assert_array_equal(np.load(one), render_flow([dog.points], 48, 72))


def test_render_unknown_entity(tmp_path):
    result = run("render", EXAMPLES / "two_entities.json", "-o", tmp_path / "f.npy", "--entity", "horse")
    assert result.exit_code == 2
    assert "no entity 'horse'; ids are cat, girl" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_preview_png_and_gif(tmp_path):
    png, gif = tmp_path / "p.png", tmp_path / "p.gif"
    background = tmp_path / "bg.png"
    iio.imwrite(background, np.zeros((10, 10, 3), np.uint8))
    result = run("preview", EXAMPLES / "two_entities.json", "-o", png, "--background", background,
                 "--height", 96, "--width", 144)
    assert result.exit_code == 0, result.output
    assert iio.imread(png).shape == (96, 144, 3)
    result = run("preview", EXAMPLES / "tora_circle.txt", "-o", gif, "--frames", 6, "--height", 32, "--width", 48)
    assert result.exit_code == 0, result.output
    assert iio.imread(gif).shape[:3] == (6, 32, 48)


def test_preview_bad_suffix(tmp_path):
    result = run("preview", EXAMPLES / "two_entities.json", "-o", tmp_path / "p.jpg")
    assert result.exit_code == 2 and "use one of .png, .gif, .mp4" in result.stderr
