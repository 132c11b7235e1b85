import json

import pytest
import torch
import typer
from safetensors.torch import save_file
from typer.testing import CliRunner

from cli.convert import convert_tora as convert_command
from tests.models.tiny import COGVIDEOX_KEYS, perturb
from tora2.errors import InputError
from tora2.pipelines.components import build_tiny_components
from tora2.pipelines.convert import convert_tora
from tora2.models.transformer_tora2 import Tora2Transformer3DModel
from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

app = typer.Typer()


@app.callback()
def _root():
    """Local app with the real command."""


app.command("convert-tora")(convert_command)


@pytest.fixture(scope="module")
def tora_folder(tmp_path_factory):
    """A tiny folder in the official Tora T2V layout: the transformer holds Tora's key names only."""
    root = tmp_path_factory.mktemp("tora")
    components = build_tiny_components("tiny", seed=1)
    transformer = components["transformer"]
    perturb([p for n, p in transformer.named_parameters() if transformer.part_of(n) == "tora"], scale=0.3)
    Tora2Pipeline(**components).save_pretrained(root / "full")
    src = root / "src"
    src.mkdir()
    for name in ("vae", "text_encoder", "tokenizer", "scheduler"):
        (root / "full" / name).rename(src / name)
    (src / "transformer").mkdir()
    state = {k: v.contiguous() for k, v in transformer.state_dict().items() if transformer.part_of(k) != "tora2"}
    save_file(state, str(src / "transformer" / "diffusion_pytorch_model.safetensors"))
    config = {"_class_name": "ToraTransformer3DModel", **{k: transformer.config[k] for k in COGVIDEOX_KEYS},
              "ofs_embed_dim": None, "patch_size_t": None}
    (src / "transformer" / "config.json").write_text(json.dumps(config))
    index = json.loads((root / "full" / "model_index.json").read_text())
    tora_index = {"_class_name": "ToraPipeline", **{k: index[k] for k in ("vae", "text_encoder", "tokenizer", "scheduler")},
                  "transformer": ["tora", "ToraTransformer3DModel"]}
    (src / "model_index.json").write_text(json.dumps(tora_index))
    # The reference goes through save_pretrained → from_pretrained too (diffusers' loading path
    # changes float rounding by ~1e-6 against the in-memory model).
    return src, Tora2Transformer3DModel.from_pretrained(root / "full" / "transformer"), state


def test_convert_loads_strictly_and_starts_at_identity(tora_folder, tmp_path):
    src, original, state = tora_folder
    report = convert_tora(src, tmp_path / "tora2")
    assert report["loaded"] == len(state) and report["identity_init"] > 0
    pipe = Tora2Pipeline.from_pretrained(tmp_path / "tora2")
    converted = pipe.transformer
    assert pipe.image_encoder is None and pipe.personalization is not None
    own = converted.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 4, 4, 4, generator=g)
    flow = torch.randn(1, 3, 4, 4, 4, generator=g)
    text = torch.randn(1, 32, 32, generator=g)
    with torch.no_grad():
        a = converted(x, text, torch.tensor([500]), video_flow=flow).sample
        b = original(x, text, torch.tensor([500]), video_flow=flow).sample
    assert torch.equal(a, b)  # Tora's output, bit for bit


def test_convert_cli_and_errors(tora_folder, tmp_path):
    src, _, _ = tora_folder
    runner = CliRunner()
    result = runner.invoke(app, ["convert-tora", str(src), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Tora2 tensors at identity init (config auto)" in result.stdout
    result = runner.invoke(app, ["convert-tora", str(src), str(tmp_path / "out")])
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = runner.invoke(app, ["convert-tora", str(tmp_path), str(tmp_path / "x")])
    assert result.exit_code == 2 and "has no model_index.json" in result.stderr
    with pytest.raises(InputError, match="does not match the Tora transformer"):
        convert_tora(src, tmp_path / "y", config="cogvideox-2b-tora2")
    assert not (tmp_path / "y").exists()
