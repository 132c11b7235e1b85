"""A training curriculum over synthetic clips: easy scenes first (one entity on a gradient), then the full mix.

A curriculum is a list of phases, written ``ENTITIES:KINDS[:UNTIL_STEP]`` and comma-separated, e.g.
``1:gradient:1500,2:gradient+texture:3000,3:all``: up to 1 entity over gradients until step 1500,
up to 2 over gradients and textures until 3000, then up to 3 over every background kind. The last
phase has no end. ENTITIES is a maximum (a clip has 1 to N, uniformly) or a range ``MIN-MAX``:
``2-3:gradient`` trains on crowded scenes only, where paths meet most.
``CurriculumDataset.set_step(step)`` picks the phase; ``train()`` calls it before every batch, so a
resumed run draws exactly what an uninterrupted one draws. Each phase's clips
have their own keys (``SyntheticClipDataset.key_suffix``), so cached encodings never mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tora2.errors import InputError
from tora2.synthetic.backgrounds import KINDS
from tora2.synthetic.dataset import SyntheticClipDataset


@dataclass(frozen=True)
class Phase:
    max_entities: int
    background_kinds: tuple[str, ...]
    until_step: int | None  # the phase covers steps < until_step; None: to the end
    min_entities: int = 1


def parse_curriculum(spec: str) -> list[Phase]:
    """``"1:gradient:1500,3:all"`` → phases; one-line errors name the bad part and the form."""
    form = "ENTITIES:KINDS[:UNTIL_STEP] phases, comma-separated, ENTITIES a maximum or MIN-MAX (e.g. 1:gradient:1500,2-3:all)"
    phases: list[Phase] = []
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise InputError(f"curriculum {spec!r} is empty; give {form}")
    for i, part in enumerate(parts):
        fields = part.split(":")
        last = i == len(parts) - 1
        if len(fields) != (2 if last else 3):
            raise InputError(f"curriculum phase {part!r}: every phase but the last needs an until-step, the last none; give {form}")
        try:
            low, _, high = fields[0].rpartition("-")
            entities, least = int(high), int(low) if low else 1
            until = int(fields[2]) if len(fields) == 3 else None
        except ValueError:
            raise InputError(f"curriculum phase {part!r}: entities and until-step must be integers; give {form}") from None
        kinds = tuple(KINDS) if fields[1] == "all" else tuple(k for k in fields[1].split("+"))
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise InputError(f"curriculum phase {part!r}: unknown background kind(s) {', '.join(unknown)}; use all or "
                             f"some of {', '.join(KINDS)} joined by +")
        if entities < 1:
            raise InputError(f"curriculum phase {part!r}: entities is {entities}; use at least 1")
        if not 1 <= least <= entities:
            raise InputError(f"curriculum phase {part!r}: entity range {least}-{entities} is empty or starts below 1; "
                             f"give MIN-MAX with 1 ≤ MIN ≤ MAX")
        previous = phases[-1].until_step if phases else 0
        if until is not None and until <= previous:
            raise InputError(f"curriculum phase {part!r}: until-step {until} must be after {previous}")
        phases.append(Phase(entities, kinds, until, least))
    return phases


class CurriculumDataset(torch.utils.data.Dataset):
    """``length`` synthetic clips per phase; ``set_step(step)`` selects the phase the next items come from."""

    def __init__(self, phases: list[Phase], length: int, seed: int = 0, split: str = "train", num_frames: int = 9,
                 height: int = 64, width: int = 64, recolour: bool = False):
        if not phases:
            raise InputError("a curriculum needs at least one phase")
        self.phases = list(phases)
        self.datasets = [SyntheticClipDataset(length, seed, split, num_frames, height, width, p.max_entities, p.background_kinds,
                                              recolour, p.min_entities) for p in self.phases]
        self.phase = 0

    def phase_at(self, step: int) -> int:
        for i, phase in enumerate(self.phases):
            if phase.until_step is None or step < phase.until_step:
                return i
        return len(self.phases) - 1

    def set_step(self, step: int) -> None:
        self.phase = self.phase_at(step)

    def __len__(self) -> int:
        return len(self.datasets[0])

    def __getitem__(self, index: int) -> dict:
        return self.datasets[self.phase][index]
