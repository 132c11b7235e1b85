"""The shared optimizer schedule: warm-up, constant, and cosine decay from a resumable start step."""

import math

import pytest
import torch

from tora2.errors import InputError
from tora2.training.optim import OptimConfig, build_optimizer, check_optim, lr_multiplier, scaled_groups


def test_constant_schedule_warms_up_then_holds():
    factor = lr_multiplier(OptimConfig(warmup_steps=4), max_steps=100)
    assert [factor(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert factor(99) == 1.0


def test_cosine_decay_starts_at_its_step_and_ends_at_the_floor():
    optim = OptimConfig(decay="cosine", decay_start_step=50, min_lr_ratio=0.1)
    factor = lr_multiplier(optim, max_steps=150)
    assert factor(0) == factor(49) == 1.0
    assert factor(100) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert factor(150) == pytest.approx(0.1)
    assert factor(400) == pytest.approx(0.1)  # past max_steps it stays at the floor
    values = [factor(s) for s in range(50, 151)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_a_decay_that_starts_after_the_run_leaves_the_rate_constant():
    factor = lr_multiplier(OptimConfig(decay="cosine", decay_start_step=2250), max_steps=1500)
    assert factor(0) == factor(1499) == 1.0
    check_optim(OptimConfig(decay="cosine", decay_start_step=2250), max_steps=1500)


def test_resumed_scheduler_follows_the_current_config_not_the_saved_one():
    """LambdaLR must not carry the old schedule in its state: a run resumed with decay: cosine anneals."""
    param = torch.nn.Parameter(torch.zeros(1))
    _, constant = build_optimizer([param], OptimConfig(learning_rate=1.0), max_steps=10)
    for _ in range(6):
        constant.optimizer.step()
        constant.step()
    state = constant.state_dict()
    param2 = torch.nn.Parameter(torch.zeros(1))
    optim = OptimConfig(learning_rate=1.0, decay="cosine", decay_start_step=6, min_lr_ratio=0.0)
    optimizer, cosine = build_optimizer([param2], optim, max_steps=10)
    cosine.load_state_dict(state)
    optimizer.step()
    cosine.step()  # step 7 of 10: 1/4 of the way down
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": 0.0}, "optim.learning_rate must be > 0"),
        ({"decay": "linear"}, "optim.decay 'linear'"),
        ({"decay": "cosine", "decay_start_step": -1}, "optim.decay_start_step must be ≥ 0"),
        ({"min_lr_ratio": 2.0}, "optim.min_lr_ratio"),
        ({"warmup_steps": -1}, "must be ≥ 0"),
    ],
)
def test_bad_settings_are_refused_with_the_key(changes, message):
    with pytest.raises(InputError, match=message):
        check_optim(OptimConfig(**changes), max_steps=10)


def test_overrides_in_exponent_form_are_numbers():
    """PyYAML reads ``3e-4`` (no dot) as a string: a float field must still get a float, and text that
    is no number is a one-line error naming the key."""
    from tora2.training.config import load_train_config

    cfg = load_train_config(None, ["optim.learning_rate=3e-4", "max_steps=20", "optim.warmup_steps=1e1"])
    assert cfg.optim.learning_rate == pytest.approx(3e-4) and isinstance(cfg.optim.learning_rate, float)
    assert cfg.optim.warmup_steps == 10 and isinstance(cfg.optim.warmup_steps, int)
    with pytest.raises(InputError, match="optim.learning_rate must be a number; got 'fast'"):
        load_train_config(None, ["optim.learning_rate=fast"])
    with pytest.raises(InputError, match="must be an integer; got '2.5e0'"):
        load_train_config(None, ["optim.warmup_steps=2.5e0"])


def test_lr_scale_gives_named_layers_their_own_rate_on_the_same_schedule():
    new, old = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optim = OptimConfig(learning_rate=0.1, warmup_steps=2, lr_scale={"reference": 10})
    groups = scaled_groups([("transformer.blocks.0.reference_attn.w", new), ("transformer.blocks.0.attn1.w", old)], optim)
    assert [(g["lr"], g["params"]) for g in groups] == [(0.1, [old]), (1.0, [new])]
    optimizer, schedule = build_optimizer(groups, optim, max_steps=10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.5])  # warm-up step 1 of 2
    for bad in ({"reference": 0}, {"reference": "1e1"}, {"reference": float("nan")}):
        with pytest.raises(InputError, match="optim.lr_scale.reference must be a number > 0"):
            check_optim(OptimConfig(lr_scale=bad), 10)
