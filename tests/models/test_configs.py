import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from tora2.errors import InputError
from tora2.models.configs import available_model_configs, count_parameters, load_model_config

runner = CliRunner()


def test_shipped_configs():
    assert available_model_configs() == ["cogvideox-2b-tora2", "cogvideox-5b-tora2", "tiny"]
    assert load_model_config("cogvideox-5b-tora2")["transformer"]["num_layers"] == 42


def test_unknown_keys_are_rejected_with_the_allowed_names(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("transformer:\n  num_layers: 2\n  num_layerz: 3\n")
    with pytest.raises(InputError, match="unknown key\\(s\\) num_layerz; allowed: num_attention_heads"):
        load_model_config(bad)
    bad.write_text("transformer: {}\nvea: {}\n")
    with pytest.raises(InputError, match="unknown section\\(s\\) vea"):
        load_model_config(bad)
    with pytest.raises(InputError, match="unknown model config 'huge'"):
        load_model_config("huge")


def test_parameter_counts_of_the_5b_config():
    counts = count_parameters(load_model_config("cogvideox-5b-tora2"))
    assert counts["Tora trajectory parts"] == 694_352_000
    assert counts["CogVideoX backbone"] == 5_570_283_072


def test_info_command_json_and_errors():
    result = runner.invoke(app, ["info", "--config", "cogvideox-5b-tora2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["parameters"]["Tora trajectory parts"] == 694_352_000
    result = runner.invoke(app, ["info", "--config", "nope"])
    assert result.exit_code == 2
    assert "unknown model config 'nope'" in result.stderr
    assert "Traceback" not in result.output
