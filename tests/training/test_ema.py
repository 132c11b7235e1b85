"""The moving average of the trained weights: its arithmetic, exact resume, and the two saved pipelines."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.training.test_training import config, manifest, run  # noqa: F401 (manifest is a fixture)
from tora2.errors import InputError
from tora2.training.ema import ParameterEMA


def test_average_follows_the_warmed_up_decay():
    p = torch.nn.Parameter(torch.zeros(3))
    ema = ParameterEMA([("p", p)], decay=0.9)
    expected = torch.zeros(3)
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        p.data.fill_(value)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
        ema.update()
    assert torch.allclose(ema.shadow[0], expected)
    with ema.swapped_in():
        assert torch.allclose(p.data, expected)
    assert torch.equal(p.data, torch.full((3,), 4.0))  # the live weights are back


def test_state_round_trip_and_a_missing_parameter():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    ema = ParameterEMA([("p", p)], decay=0.5)
    ema.update()
    other = ParameterEMA([("p", torch.nn.Parameter(torch.zeros(2)))], decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.shadow[0], ema.shadow[0])
    with pytest.raises(KeyError, match="lacks 1 parameter"):
        ParameterEMA([("q", q)], decay=0.5).load_state_dict(ema.state_dict())


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_bad_decay_is_refused(tmp_path, manifest, decay):  # noqa: F811
    with pytest.raises(InputError, match="ema_decay must be in"):
        config(tmp_path, manifest, ema_decay=decay)


def test_resume_continues_the_same_average_and_both_pipelines_are_saved(tmp_path, manifest):  # noqa: F811
    overrides = {"checkpoint_every": 2, "max_steps": 4, "optim.warmup_steps": 2, "ema_decay": 0.9, "save_pipeline": True}
    full = run(config(tmp_path / "a", manifest, **overrides))
    run(config(tmp_path / "b", manifest, **{**overrides, "max_steps": 2}))
    resumed = run(config(tmp_path / "b", manifest, **overrides), resume="latest")
    assert resumed.losses == full.losses
    weights = "transformer/diffusion_pytorch_model.safetensors"
    for folder in ("pipeline", "pipeline-online"):
        a, b = load_file(tmp_path / "a" / "run" / folder / weights), load_file(tmp_path / "b" / "run" / folder / weights)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder
    average = load_file(tmp_path / "a" / "run" / "pipeline" / weights)
    online = load_file(tmp_path / "a" / "run" / "pipeline-online" / weights)
    live = full.components["transformer"].state_dict()
    assert all(torch.equal(online[k], live[k]) for k in online)  # the returned model keeps the live weights
    assert any(not torch.equal(average[k], online[k]) for k in average)  # and the average differs from them
