"""``tora2 generate`` through a Typer app that registers the real command: files, exit codes, messages."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from cli import generate as generate_cli
from tora2.trajectory import Track, write_track_json

F, H, W = 9, 32, 32
runner = CliRunner()
app = typer.Typer()


@app.callback()
def _root():
    """Local app: `tora2 generate` is registered in cli/main.py by the maintainer."""


app.command("generate")(generate_cli.generate)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tora2.pipelines.components import build_tiny_components
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    directory = tmp_path_factory.mktemp("model")
    # With a default reference guidance of its own, as the embedded model has: the sidecar records it.
    Tora2Pipeline(**build_tiny_components("tiny", seed=0), reference_guidance_scale=1.5).save_pretrained(directory)
    return directory


@pytest.fixture
def scene(tmp_path, monkeypatch):
    """Two sprite images and their single-path track files; the entity cache inside tmp_path."""
    monkeypatch.setenv("TORA2_CACHE", str(tmp_path / "cache"))
    files = {}
    for name, color, start, end in (("cat", (230, 120, 20), (4, 4), (28, 28)), ("dog", (20, 90, 230), (28, 4), (4, 28))):
        image = np.zeros((40, 40, 4), np.uint8)
        image[..., :3] = color
        image[8:32, 8:32, 3] = 255
        Image.fromarray(image, "RGBA").save(tmp_path / f"{name}.png")
        points = np.stack([np.linspace(start[0], end[0], F), np.linspace(start[1], end[1], F)], 1)
        track = Track(id=name, text=None, image=f"{name}.png", kind="object", points=points, visible=np.ones(F, bool))
        write_track_json([track], tmp_path / f"{name}.json", height=H, width=W)
        files[name] = track
    both = [Track(**{**t.__dict__, "text": n}) for n, t in files.items()]
    write_track_json(both, tmp_path / "both.json", height=H, width=W)
    return tmp_path


def invoke(model_dir, *args):
    size = ["--frames", F, "--height", H, "--width", W, "--steps", 2, "--model", model_dir]
    return runner.invoke(app, ["generate", *map(str, [*size, *args])])


def pair_args(scene):
    return ["--entity", scene / "cat.png", "--path", scene / "cat.json", "--text", "cat",
            "--entity", scene / "dog.png", "--path", scene / "dog.json", "--text", "dog"]


def test_mp4_with_overlay_and_sidecar(model_dir, scene):
    out = scene / "out.mp4"
    result = invoke(model_dir, "--prompt", "a cat chases a dog", *pair_args(scene), "--seed", 7, "-o", out, "--overlay")
    assert result.exit_code == 0, result.output
    video = iio.imread(out)
    assert video.shape == (F, H, W, 3)
    assert iio.imread(scene / "out.overlay.mp4").shape == (F, H, W, 3)
    sidecar = json.loads((scene / "out.mp4.json").read_text())
    assert sidecar["prompt"] == "a cat chases a dog" and sidecar["seed"] == 7
    assert (sidecar["num_frames"], sidecar["height"], sidecar["width"]) == (F, H, W)
    assert [e["text"] for e in sidecar["entities"]] == ["cat", "dog"]
    assert sidecar["entities"][0]["points"][0] == [4.0, 4.0]
    assert sidecar["model"] == str(model_dir) and len(sidecar["timings"]["step_s"]) == 2
    assert sidecar["reference_guidance_scale"] == 1.5  # the model's default, which the call used
    assert {"torch", "diffusers", "transformers", "tora2"} <= set(sidecar["versions"])
    assert sorted(p.name for p in scene.iterdir() if p.name.startswith(("out", ".out"))) == [
        "out.mp4", "out.mp4.json", "out.overlay.mp4"]  # no temporary files left


def test_same_seed_same_frames_and_gif(model_dir, scene):
    args = ["--prompt", "a cat", "--entity", scene / "cat.png", "--path", scene / "cat.json", "--seed", 3]
    assert invoke(model_dir, *args, "-o", f"{scene / 'a'}/").exit_code == 0
    assert invoke(model_dir, *args, "-o", f"{scene / 'b'}/").exit_code == 0
    a = sorted((scene / "a").glob("frame_*.png"))
    assert len(a) == F
    for pa in a:
        assert np.array_equal(iio.imread(pa), iio.imread(scene / "b" / pa.name))
    assert json.loads((scene / "a" / "generation.json").read_text())["entities"][0]["text"] == "cat"
    result = invoke(model_dir, *args, "-o", scene / "a.gif")
    assert result.exit_code == 0, result.output
    assert iio.imread(scene / "a.gif").shape[:3] == (F, H, W)


def test_tracks_file_describes_all_entities(model_dir, scene):
    result = invoke(model_dir, "--prompt", "a cat and a dog", "--tracks", scene / "both.json", "--seed", 1, "-o", scene / "t.mp4")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((scene / "t.mp4.json").read_text())
    assert [e["text"] for e in sidecar["entities"]] == ["cat", "dog"]
    assert sidecar["entities"][1]["image"] == str(scene / "dog.png")


def test_dry_run_prints_plan_and_writes_nothing(model_dir, scene):
    result = invoke(model_dir, "--prompt", "a cat chases a dog", *pair_args(scene), "--seed", 1, "-o", scene / "dry.mp4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "entities: 2" in result.stdout and "[1] 'dog' kind=object" in result.stdout
    assert f"{F} frames, {W}x{H} (WxH)" in result.stdout
    assert not list(scene.glob("dry*"))


def test_embedded_default_model_warns_once(scene, monkeypatch, caplog):
    monkeypatch.setenv("TORA2_MODEL_CACHE", str(scene / "models"))
    monkeypatch.setattr("tora2.pipelines.embedded._warned", False)
    monkeypatch.setattr("tora2.pipelines.embedded.has_trained_embedded", lambda: False)
    result = runner.invoke(app, ["generate", "--prompt", "a cat", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "model:    tora2-embedded-untrained" in result.stdout and "9 frames, 128x128" in result.stdout
    assert [r.message for r in caplog.records if "untrained" in r.message] == [
        "the default model is untrained (tiny random weights): videos are noise; pass --model DIR for a real model"]
    assert (next((scene / "models").iterdir()) / "model_index.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--entity", "{s}/cat.png"], "1 --entity and 0 --path given"),
        (["--entity", "{s}/cat.png", "--path", "{s}/cat.json", "--text", "a", "--text", "b"], "2 --text value(s) for 1 --entity"),
        (["--entity", "{s}/nope.png", "--path", "{s}/cat.json"], "--entity 1: image {s}/nope.png does not exist"),
        (["--entity", "{s}", "--path", "{s}/cat.json"], "--entity 1: image {s} is a directory, not an entity directory"),
        (["--entity", "{s}/cat.png", "--path", "{s}/cat.json", "--kind", "robot"], "--entity 1: kind 'robot' is not one of"),
        (["--entity", "{s}/cat.png", "--path", "{s}/both.json"], "holds 2 entities (cat, dog); pick one with"),
        (["--guidance", "nan"], "--guidance must be a finite number; got NaN"),
        (["--guidance", "inf"], "--guidance must be a finite number; got Infinity"),
        (["--guidance", "-1"], "--guidance = -1 is out of range; use a value at least 0 and at most 100"),
        (["--steps", "0"], "--steps = 0 is out of range; use 1..10000"),
        (["--steps", "-3"], "--steps = -3 is out of range; use 1..10000"),
        (["--frames", "0"], "--frames = 0 is out of range; use 1..4096"),
        (["--height", "100000"], "--height = 100000 is out of range; use 8..8192"),
        (["--width", "-16"], "--width = -16 is out of range; use 8..8192"),
        (["--seed", "-1"], "--seed = -1 is out of range"),
        (["--fps", "0"], "--fps = 0 is out of range; use a value greater than 0"),
        (["--fps", "nan"], "--fps must be a finite number"),
        (["--prompt", " "], "--prompt is empty"),
        (["--height", "8192", "--width", "8192"], "needs about"),
        (["--tracks", "{s}/both.json", "--entity", "{s}/cat.png"], "either --tracks FILE or --entity/--path"),
        (["--frames", "10"], "num_frames 10 cannot be produced: it must be 8k+1"),
        (["--width", "40"], "width 40 cannot be produced: it must be a positive multiple of 16"),
        (["-o", "{s}/out.avi"], "format '.avi' is not supported"),
        (["-o", "{s}/cat.png/out.mp4"], "cannot be written"),
        (["-o", "/proc/tora2-nope/out.mp4"], "cannot be written: /proc is not a writable folder"),  # root passes os.access
        (["--offload", "disk"], "--offload 'disk' is not one of model, sequential"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(model_dir, scene, args, message):
    args = [a.format(s=scene) for a in args]
    before = sorted(p.name for p in scene.iterdir())
    result = invoke(model_dir, "--prompt", "a cat", "-o", scene / "out.mp4", *args)
    assert result.exit_code == 2, result.output
    if "needs about" in message:  # the memory refusal names the largest size that fits, and so does --dry-run
        assert "the largest 8192×8192-shaped size that fits is --width" in result.stderr
        dry = invoke(model_dir, "--prompt", "a cat", "-o", scene / "out.mp4", *args, "--dry-run")
        assert dry.exit_code == 2 and "needs about" in dry.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message.format(s=scene) in result.stderr
    assert sorted(p.name for p in scene.iterdir()) == before


def test_unknown_model_and_too_many_entities(model_dir, scene):
    result = invoke(scene / "no-model", "--prompt", "a cat")
    assert result.exit_code == 2 and "model directory" in result.stderr and "does not exist" in result.stderr
    five = []
    for _ in range(5):
        five += ["--entity", scene / "cat.png", "--path", scene / "cat.json"]
    result = invoke(model_dir, "--prompt", "cats", *five, "-o", scene / "five.mp4")
    assert result.exit_code == 2
    assert "5 entities given but model" in result.stderr and "supports at most 4" in result.stderr
    assert not (scene / "five.mp4").exists()


def test_lora_file_changes_the_video(model_dir, scene):
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    transformer = Tora2Transformer3DModel.from_pretrained(model_dir / "transformer")
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False))
    state = {f"transformer.{k}": v.contiguous() for k, v in get_peft_model_state_dict(transformer).items()}
    save_file(state, str(scene / "lora.safetensors"))
    args = ["--prompt", "a cat", "--seed", 2]
    assert invoke(model_dir, *args, "-o", f"{scene / 'plain'}/").exit_code == 0
    result = invoke(model_dir, *args, "--lora", scene / "lora.safetensors", "-o", f"{scene / 'lora'}/")
    assert result.exit_code == 0, result.output
    assert json.loads((scene / "lora" / "generation.json").read_text())["lora"] == str(scene / "lora.safetensors")
    assert not np.array_equal(iio.imread(scene / "plain" / "frame_00004.png"), iio.imread(scene / "lora" / "frame_00004.png"))
    (scene / "bad.safetensors").write_bytes(b"not a safetensors file")
    result = invoke(model_dir, *args, "--lora", scene / "bad.safetensors", "-o", scene / "bad.mp4")
    assert result.exit_code == 2 and "is not a readable safetensors file" in result.stderr
    assert not (scene / "bad.mp4").exists()
