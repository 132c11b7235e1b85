"""The optimizer and learning-rate schedule of every training stage (VAE, encoders, transformer).

AdamW, a linear warm-up from 0, then either a constant rate or a cosine decay that starts at
``decay_start_step`` (so a resumed run can anneal from where it stopped) and ends at
``min_lr_ratio`` × the rate on the run's last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from tora2.errors import InputError

DECAYS = ("constant", "cosine")


@dataclass
class OptimConfig:
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 0  # linear warm-up from 0
    max_grad_norm: float = 1.0  # 0 = no clipping
    decay: str = "constant"  # after warm-up: constant, or cosine from decay_start_step to max_steps
    decay_start_step: int = 0  # at or past max_steps: no decay in this run (e.g. a shorter ablation)
    min_lr_ratio: float = 0.05  # cosine only: the rate on the last step, as a share of learning_rate
    # Rate multipliers by parameter name: {substring: factor}, e.g. {reference: 10} for layers a
    # config field added to trained weights (zero-initialised, they learn slowly at a fine-tune's rate).
    # A parameter takes the factor of the first substring its name contains; the others 1.
    lr_scale: dict = field(default_factory=dict)


def check_optim(optim: OptimConfig, max_steps: int, key: str = "optim") -> None:
    """One-line errors naming the key and the fix."""
    if not optim.learning_rate > 0:
        raise InputError(f"{key}.learning_rate must be > 0; got {optim.learning_rate}")
    if optim.warmup_steps < 0 or optim.max_grad_norm < 0 or optim.weight_decay < 0:
        raise InputError(f"{key}.warmup_steps, max_grad_norm and weight_decay must be ≥ 0")
    if optim.decay not in DECAYS:
        raise InputError(f"{key}.decay {optim.decay!r}: use one of {', '.join(DECAYS)}")
    if optim.decay_start_step < 0:  # at or past max_steps: the run ends before the decay starts
        raise InputError(f"{key}.decay_start_step must be ≥ 0; got {optim.decay_start_step}")
    if not 0 <= optim.min_lr_ratio <= 1:
        raise InputError(f"{key}.min_lr_ratio must be in [0, 1]; got {optim.min_lr_ratio}")
    for name, factor in optim.lr_scale.items():
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0 or not math.isfinite(factor):
            raise InputError(f"{key}.lr_scale.{name} must be a number > 0; got {factor!r}")


def lr_multiplier(optim: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """The factor on ``learning_rate`` after ``s`` optimizer steps (a plain function: LambdaLR then
    keeps it out of its saved state, so a resumed run follows the schedule of its current config)."""
    warmup, start = optim.warmup_steps, optim.decay_start_step
    span = max(1, max_steps - start)

    def factor(s: int) -> float:
        rise = min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0
        if optim.decay == "constant" or s < start:
            return rise
        progress = min(1.0, (s - start) / span)
        return rise * (optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    return factor


def scaled_groups(named: Iterable[tuple[str, Any]], optim: OptimConfig) -> list[dict]:
    """(name, parameter) pairs → AdamW param groups, one per rate multiplier of ``optim.lr_scale``."""
    groups: dict[float, list] = {}
    for name, parameter in named:
        factor = next((f for pattern, f in optim.lr_scale.items() if pattern in name), 1.0)
        groups.setdefault(float(factor), []).append(parameter)
    return [{"params": params, "lr": optim.learning_rate * factor} for factor, params in sorted(groups.items())]


def build_optimizer(params: Iterable[Any], optim: OptimConfig, max_steps: int):
    """AdamW over ``params`` (tensors or param-group dicts, e.g. from :func:`scaled_groups`) and its
    LambdaLR schedule (the same factor on every group's own rate)."""
    import torch

    check_optim(optim, max_steps)
    optimizer = torch.optim.AdamW(
        params, lr=optim.learning_rate, betas=(optim.beta1, optim.beta2), eps=optim.eps, weight_decay=optim.weight_decay
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(optim, max_steps))
