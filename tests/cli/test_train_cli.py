"""``tora2 train`` / ``tora2 finetune`` through Typer's CliRunner (registered on a local app)."""

from __future__ import annotations

import numpy as np
import typer
from PIL import Image
from typer.testing import CliRunner

from cli import train as train_cli
from tests.training.synthetic import make_clips

app = typer.Typer()
train_cli.register(app)
runner = CliRunner()


def test_train_writes_run_and_pipeline_folder(tmp_path):
    manifest = make_clips(tmp_path / "data", count=2)
    config = tmp_path / "train.yaml"
    config.write_text(f"max_steps: 2\ntensorboard: false\noutput_dir: {tmp_path / 'run'}\n"
                      f"data:\n  manifest: {manifest}\n  buckets: [[64, 64]]\n")
    result = runner.invoke(app, ["train", str(config), "--set", "log_every=1"])
    assert result.exit_code == 0, result.output
    assert "step 2/2" in result.output
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert (tmp_path / "run" / "checkpoints" / "step-0000002").is_dir()
    assert (tmp_path / "run" / "pipeline" / "model_index.json").is_file()


def test_train_bad_override_is_one_line(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("max_steps: 2\n")
    result = runner.invoke(app, ["train", str(config), "--set", "optim.lr=1"])
    assert result.exit_code == 2
    assert "unknown key(s) lr" in result.output
    assert "Traceback" not in result.output


def test_train_bad_manifest_names_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"video": "x.mp4"}\n')
    config = tmp_path / "train.yaml"
    config.write_text(f"max_steps: 1\ndata:\n  manifest: {manifest}\n")
    result = runner.invoke(app, ["train", str(config), "--set", f"output_dir={tmp_path / 'run'}"])
    assert result.exit_code == 2
    assert "line 1 field 'caption': missing" in result.output


def test_finetune_writes_lora(tmp_path):
    subject = tmp_path / "subject"
    subject.mkdir()
    for i, color in enumerate([(200, 30, 30), (190, 40, 35)]):
        image = np.full((80, 100, 3), 240, np.uint8)
        image[20:60, 30:70] = color
        Image.fromarray(image).save(subject / f"{i}.png")
    out = tmp_path / "lora.safetensors"
    result = runner.invoke(app, ["finetune", "--subject", str(subject), "--text", "a sks square", "--steps", "2",
                                 "-o", str(out), "--set", "lora.rank=4"])
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    keys = load_file(str(out))
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys)


def test_finetune_missing_subject(tmp_path):
    result = runner.invoke(app, ["finetune", "--subject", str(tmp_path / "none"), "--text", "a sks dog",
                                 "-o", str(tmp_path / "l.safetensors")])
    assert result.exit_code == 2
    assert "is not a folder" in result.output
    assert not (tmp_path / "l.safetensors").exists()


def test_progress_follows_the_terminal_and_an_explicit_override_wins(tmp_path):
    """Background runs log no bars (stderr is not a terminal here); ``--set progress=…`` still decides."""
    import yaml

    from tora2.configuration import load_run_config, terminal_progress
    from tora2.training.config import load_train_config

    config = tmp_path / "train.yaml"
    config.write_text("max_steps: 2\n")
    assert terminal_progress() == "progress=false"
    assert load_train_config(config, [terminal_progress()]).progress is False
    assert load_train_config(config, [terminal_progress(), "progress=true"]).progress is True
    assert load_run_config(load_train_config, config, ["progress=true"]).progress is True
    assert load_run_config(load_train_config, config, ["max_steps=5"], ["max_steps=7"]).max_steps == 7  # forced last
    manifest = make_clips(tmp_path / "data", count=1)
    config.write_text(f"max_steps: 1\ntensorboard: false\noutput_dir: {tmp_path / 'run'}\n"
                      f"data:\n  manifest: {manifest}\n  buckets: [[64, 64]]\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["progress"] is False
    assert "\r" not in result.output
