"""``tora2 entity prepare`` / ``tora2 entity show`` driven through the real Typer app."""

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image
from typer.testing import CliRunner

from cli.main import app


@pytest.fixture(autouse=True)
def no_insightface_detector(monkeypatch, tmp_path):
    monkeypatch.setenv("TORA2_FACE_DETECTOR", str(tmp_path / "absent.onnx"))


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def sprite(tmp_path):
    image = np.zeros((40, 60, 4), np.uint8)
    image[5:15, 30:50] = (0, 200, 0, 255)
    path = tmp_path / "sprite.png"
    Image.fromarray(image, "RGBA").save(path)
    return path


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "cat.jpg"
    Image.fromarray(skimage.data.chelsea()).save(path)
    return path


def test_prepare_alpha_writes_entity_directory(runner, tmp_path, sprite):
    result = runner.invoke(app, ["entity", "prepare", str(sprite), "--text", "a green block", "-o", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert "object, box 30,5,50,15, segmenter alpha" in result.stdout
    record = json.loads((tmp_path / "e" / "entity.json").read_text())
    assert {k: record[k] for k in ("text", "kind", "box", "segmenter", "detector", "source")} == {
        "text": "a green block", "kind": "object", "box": [30, 5, 50, 15], "segmenter": "alpha",
        "detector": "haar", "source": str(sprite),
    }
    crop = Image.open(tmp_path / "e" / "crop.png")
    assert crop.mode == "RGBA" and crop.size == (20, 20)
    mask = np.asarray(Image.open(tmp_path / "e" / "mask.png"))
    assert mask.shape == (40, 60) and int((mask > 0).sum()) == 200


def test_prepare_grabcut_warns_once(runner, tmp_path, photo):
    result = runner.invoke(
        app, ["entity", "prepare", str(photo), "--text", "a ginger cat", "--box", "100,20,330,300", "--kind", "object", "-o", str(tmp_path / "cat")]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: no SAM checkpoint configured: segmented with OpenCV GrabCut") == 1
    assert json.loads((tmp_path / "cat" / "entity.json").read_text())["segmenter"] == "grabcut"


def test_prepare_point_with_tiny_sam(runner, tmp_path, photo):
    from tests.entities.conftest import TINY_SAM
    from entities.segment import SamArchitecture, build_sam
    import torch

    torch.manual_seed(0)
    torch.save(build_sam(SamArchitecture(**TINY_SAM)).state_dict(), tmp_path / "sam.pth")
    (tmp_path / "sam.json").write_text(json.dumps(TINY_SAM))
    result = runner.invoke(
        app, ["entity", "prepare", str(photo), "--text", "a cat", "--box", "100,20,330,300", "--sam", str(tmp_path / "sam.pth"),
              "--kind", "object", "-o", str(tmp_path / "e")]
    )
    assert result.exit_code == 0, result.output
    assert "segmenter sam" in result.stdout and "warning" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--box", "0,0,999,10"], "box 0,0,999,10 is empty or outside the 451x300 image"),
        (["--box", "1,2,3"], "--box '1,2,3' must be 4 comma-separated numbers"),
        (["--point", "5"], "--point '5' must be 2 comma-separated numbers"),
        (["--kind", "human"], "kind is human but the haar detector found no face"),
        (["--kind", "robot"], "kind 'robot' is not one of auto, human, object"),
        (["--sam", "/nonexistent/sam_vit_b.pth"], "SAM checkpoint /nonexistent/sam_vit_b.pth not found"),
    ],
)
def test_prepare_bad_input_exit_2_no_output(runner, tmp_path, photo, args, message):
    out = tmp_path / "out"
    result = runner.invoke(app, ["entity", "prepare", str(photo), "--text", "a cat", "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prepare_corrupt_and_missing_image(runner, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xffnot really a jpeg")
    result = runner.invoke(app, ["entity", "prepare", str(bad), "--text", "x", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "cannot read image" in result.stderr and not (tmp_path / "o").exists()
    result = runner.invoke(app, ["entity", "prepare", str(tmp_path / "none.png"), "--text", "x", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not found" in result.stderr


def test_prepare_mismatched_sam_checkpoint(runner, tmp_path, photo):
    (tmp_path / "sam.pth").write_bytes(b"junk")
    result = runner.invoke(app, ["entity", "prepare", str(photo), "--text", "x", "--sam", str(tmp_path / "sam.pth"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "cannot read SAM checkpoint" in result.stderr


def test_show_writes_contact_sheet(runner, tmp_path, sprite):
    for name in ("a", "b", "c"):
        assert runner.invoke(app, ["entity", "prepare", str(sprite), "--text", f"block {name}", "-o", str(tmp_path / name)]).exit_code == 0
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(app, ["entity", "show", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), "-o", str(sheet), "--columns", "2"])
    assert result.exit_code == 0, result.output
    image = Image.open(sheet)
    assert image.size == (2 * 168 + 8, 2 * (2 * 160 + 36 + 8) + 8)


def test_show_rejects_non_entity_directory(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["entity", "show", str(tmp_path / "empty"), "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 2 and "not an entity directory" in result.stderr and not (tmp_path / "s.png").exists()
