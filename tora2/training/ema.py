"""An exponential moving average of the trained parameters (the weights diffusion models sample with).

``ParameterEMA`` keeps a float32 shadow of each trainable parameter and, after every optimizer step,
moves it towards the live value: shadow ← d·shadow + (1 − d)·param, with the decay warmed up as
d = min(decay, (1 + n) / (10 + n)) for the n-th update, so the first hundred steps are not frozen
at the initial weights. It is registered with accelerate's checkpointing (``state_dict`` /
``load_state_dict``), so a resumed run continues the same average; ``swapped_in`` puts the average
into the model for saving and restores the live weights after.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch


class ParameterEMA:
    """The moving average of ``named`` (name, parameter) pairs; ``decay`` in (0, 1)."""

    def __init__(self, named: Sequence[tuple[str, torch.nn.Parameter]], decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1); got {decay}")
        self.decay = decay
        self.names = [name for name, _ in named]
        self.params = [param for _, param in named]
        self.shadow = [param.detach().float().clone() for param in self.params]
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average; call after each optimizer step."""
        d = self.current_decay()
        for shadow, param in zip(self.shadow, self.params):
            shadow.mul_(d).add_(param.detach().float(), alpha=1 - d)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "shadow": dict(zip(self.names, self.shadow))}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.names) - set(state["shadow"])
        if missing:
            raise KeyError(f"the EMA checkpoint lacks {len(missing)} parameter(s), e.g. {sorted(missing)[0]}")
        self.updates = int(state["updates"])
        self.shadow = [state["shadow"][name].float().clone() for name in self.names]

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Inside: the parameters hold the average (in their own dtype); after: their live values again."""
        live = [param.detach().clone() for param in self.params]
        with torch.no_grad():
            for param, shadow in zip(self.params, self.shadow):
                param.copy_(shadow.to(param.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(self.params, live):
                    param.copy_(value)
