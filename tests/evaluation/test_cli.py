"""``tora2 data synth`` and ``tora2 eval`` driven through Typer, registered as cli/main.py registers them."""

import json

import pytest
import typer
from typer.testing import CliRunner

from cli.eval import evaluate
from cli.synth import synth

app = typer.Typer()
data = typer.Typer()
data.command("synth")(synth)
app.add_typer(data, name="data")
app.command("eval")(evaluate)
runner = CliRunner()


def test_synth_writes_clips_and_manifest(tmp_path):
    out = tmp_path / "set"
    result = runner.invoke(app, ["data", "synth", "-o", str(out), "--clips", "2", "--seed", "5", "--frames", "4",
                                 "--height", "64", "--width", "64", "--split", "heldout"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'manifest.jsonl'}: 2 clip(s), 4 frames at 64x64 (HxW), split heldout" in result.output
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["000000.mp4", "000001.mp4"]
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["meta"]["split"] == "heldout"


@pytest.mark.parametrize("split", ["test", "extra"])  # "extra" sprites feed only the encoder stage, never clips
def test_synth_bad_input_is_one_line_exit_2(tmp_path, split):
    result = runner.invoke(app, ["data", "synth", "-o", str(tmp_path / "x"), "--clips", "1", "--split", split])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: split '{split}' is unknown; use one of train, heldout"
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_eval_ground_truth_writes_results_and_prints_table(tmp_path):
    out = tmp_path / "results.json"
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(app, ["eval", "--ground-truth", "--cases", "1", "--frames", "4", "--height", "96",
                                 "--width", "96", "-o", str(out), "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    from PIL import Image

    from tora2.trajectory.preview import SHEET_GAP

    # One case per entity count, two strips each (render, then the video with paths), 4 frames at 2×.
    assert Image.open(sheet).size == (4 * 192 + 3 * SHEET_GAP, 6 * 192 + 5 * SHEET_GAP)
    assert "| entities | cases | TrajError (px) |" in result.output
    report = json.loads(out.read_text())
    assert list(report["summary"]) == ["1", "2", "3", "all"]
    assert report["summary"]["all"]["entities"] == 6
    assert report["summary"]["all"]["traj_error_px"] < 2.0
    assert report["settings"]["model"] == "ground-truth" and report["settings"]["split"] == "heldout"


def test_eval_bad_inputs_exit_2_without_output(tmp_path):
    result = runner.invoke(app, ["eval", "--ground-truth", "-o", str(tmp_path / "r.txt")])
    assert result.exit_code == 2 and "must end in .json" in result.stderr
    result = runner.invoke(app, ["eval", "--model", str(tmp_path / "missing"), "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "model directory" in result.stderr and "does not exist" in result.stderr
    result = runner.invoke(app, ["eval", "--ground-truth", "--cases", "0", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and result.stderr.strip() == "error: --cases is 0; evaluate at least 1 case per entity count"
    result = runner.invoke(app, ["eval", "--ground-truth", "-o", str(tmp_path / "r.json"), "--sheet", str(tmp_path / "s.jpg")])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: --sheet {tmp_path / 's.jpg'} must end in .png"
    result = runner.invoke(app, ["eval", "--ground-truth", "-o", str(tmp_path / "r.json"), "--reference-guidance-scale", "nan"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: --reference-guidance-scale must be a finite number; got NaN"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_eval_with_a_saved_tiny_pipeline(tmp_path):
    from tora2.pipelines.components import build_tiny_components
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    Tora2Pipeline(**build_tiny_components("tiny", seed=0)).save_pretrained(tmp_path / "model")
    out = tmp_path / "results.json"
    result = runner.invoke(app, ["eval", "--model", str(tmp_path / "model"), "--cases", "1", "--frames", "9",
                                 "--height", "64", "--width", "64", "--steps", "1", "-o", str(out),
                                 "--reference-guidance-scale", "2", "--trajectory-guidance-scale", "1.5"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["steps"] == 1 and report["settings"]["model"] == str(tmp_path / "model")
    assert report["settings"]["reference_guidance_scale"] == 2 and report["settings"]["trajectory_guidance_scale"] == 1.5
    assert report["summary"]["all"]["entities"] == 6
    rows = report["rows"]
    assert all(r["traj_error_px"] >= 0 for r in rows)  # an untrained model: any error, but measured


def test_eval_uses_the_models_default_reference_guidance_and_0_turns_it_off(tmp_path):
    from tora2.pipelines.components import build_tiny_components
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    Tora2Pipeline(**build_tiny_components("tiny", seed=0), reference_guidance_scale=1.5).save_pretrained(tmp_path / "model")
    common = ["eval", "--model", str(tmp_path / "model"), "--cases", "1", "--frames", "9", "--height", "64", "--width", "64", "--steps", "1"]
    for extra, expected in (([], 1.5), (["--reference-guidance-scale", "0"], None), (["--reference-guidance-scale", "3"], 3.0)):
        out = tmp_path / f"r{len(extra)}{expected}.json"
        result = runner.invoke(app, [*common, *extra, "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text())["settings"]["reference_guidance_scale"] == expected


def test_eval_reconstruct_scores_the_autoencoder_round_trip(tmp_path):
    from tora2.pipelines.embedded import EMBEDDED_DIR

    out = tmp_path / "results.json"
    result = runner.invoke(app, ["eval", "--reconstruct", "--model", str(EMBEDDED_DIR), "--cases", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["mode"] == "reconstruct"
    assert report["settings"]["steps"] is None and report["settings"]["guidance_scale"] is None
    assert report["summary"]["all"]["entities"] == 6
    assert report["summary"]["all"]["traj_error_pct_width"] is not None


def test_eval_reconstruct_and_ground_truth_exclude_each_other(tmp_path):
    result = runner.invoke(app, ["eval", "--reconstruct", "--ground-truth", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert "pass one of them" in result.stderr and list(tmp_path.iterdir()) == []
