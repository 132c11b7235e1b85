"""``tora2 data prepare`` through Typer's CliRunner (the ``data`` group's own app)."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from cli.data import app
from tests.training.prepare_data import truth, write_folder
from tora2.clips.manifest import read_manifest

runner = CliRunner()


def test_prepare_writes_manifest_and_summary(tmp_path):
    paths = write_folder(tmp_path / "videos", 33)
    out = tmp_path / "data" / "manifest.jsonl"
    result = runner.invoke(app, ["prepare", str(tmp_path / "videos"), "-o", str(out), "--frames", "9"])
    assert result.exit_code == 0, result.output
    assert "3 kept, 4 dropped" in result.stdout
    assert "short.mp4      dropped  too short" in result.stdout
    assert "warning: no SAM checkpoint given" in result.stderr
    clips = read_manifest(out)
    red = clips[2].entities[0]
    assert np.linalg.norm(red.points - truth(paths["masked"]["red"]), axis=1).max() < 0.5
    assert sorted(p.name for p in (tmp_path / "data" / "references").iterdir()) == [
        "boxed_green.png", "leaving_yellow_square.png", "masked_blue.png", "masked_red.png"]


def test_missing_folder_is_one_line(tmp_path):
    result = runner.invoke(app, ["prepare", str(tmp_path / "nope"), "-o", str(tmp_path / "m.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: video folder {tmp_path / 'nope'} does not exist; pass a folder of clips (.mp4, .webm, .gif, .mov, .mkv, .avi)"
    assert not (tmp_path / "m.jsonl").exists()


def test_folder_without_videos(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["prepare", str(tmp_path / "v"), "-o", str(tmp_path / "m.jsonl")])
    assert result.exit_code == 2
    assert "has no videos" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_usable_clip_and_bad_output_suffix(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"junk")
    result = runner.invoke(app, ["prepare", str(tmp_path / "v"), "-o", str(tmp_path / "m.jsonl")])
    assert result.exit_code == 2
    assert "no usable clip" in result.stderr and "a.mp4: no caption (a.txt missing)" in result.stderr
    assert not (tmp_path / "m.jsonl").exists()
    result = runner.invoke(app, ["prepare", str(tmp_path / "v"), "-o", str(tmp_path / "m.json")])
    assert result.exit_code == 2 and "must end in .jsonl" in result.stderr
