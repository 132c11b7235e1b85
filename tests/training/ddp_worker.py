"""One rank of the 2-process training test (launched by torchrun or accelerate launch).

Trains the tiny model a few steps on the synthetic clips of ``MANIFEST`` and writes
``OUT/rank<r>.json``: a hash of every trainable weight, the losses and the world size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

import tora2  # noqa: F401  (torchvision shim)
from tests.training.test_training import fake_entity_encoder
from tora2.training.config import load_train_config
from tora2.training.loop import build_components, train


def weights_hash(*modules) -> str:
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(manifest: str, out: str, steps: int) -> None:
    torch.set_num_threads(1)
    cfg = load_train_config(None, {
        "output_dir": str(Path(out) / "run"), "max_steps": steps, "data.manifest": manifest,
        "data.buckets": [[64, 64]], "tensorboard": False, "save_pipeline": False, "log_every": 100,
        "checkpoint_every": 0, "batch_size": 1,
    })
    components = build_components(cfg)
    before = weights_hash(components["transformer"], components["personalization"])
    result = train(cfg, entity_encoder=fake_entity_encoder(components), components=components)
    from accelerate import PartialState

    state = PartialState()
    rank = int(os.environ.get("RANK", "0"))
    record = {
        "rank": rank,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "processes": state.num_processes,
        "backend": state.backend,
        "before": before,
        "after": weights_hash(result.components["transformer"], result.components["personalization"]),
        "losses": result.losses,
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
