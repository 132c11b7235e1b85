"""LoRA weights of a fine-tuned transformer, in diffusers' file format.

The file is what ``CogVideoXLoraLoaderMixin.save_lora_weights`` writes: safetensors with keys
``transformer.<module path>.lora_A.weight`` / ``lora_B.weight`` and the adapter's settings in the
metadata, so ``pipe.load_lora_weights(path)`` (diffusers LoRA loaders) and
``transformer.load_lora_adapter(path, prefix="transformer")`` both read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tora2.errors import InputError
from tora2.io import atomic_output

PREFIX = "transformer."
METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY


def lora_state_dict(transformer, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's weights with diffusers' ``transformer.`` prefix (peft's ``get_peft_model_state_dict``)."""
    from peft.utils import get_peft_model_state_dict

    if not getattr(transformer, "peft_config", None) or adapter_name not in transformer.peft_config:
        raise InputError(f"the transformer has no LoRA adapter {adapter_name!r}; train with stage: finetune")
    state = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    return {PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_lora(transformer, path: str | os.PathLike, adapter_name: str = "default") -> Path:
    """Write the adapter to ``path`` (a .safetensors file), atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"LoRA output {path} must end in .safetensors")
    state = lora_state_dict(transformer, adapter_name)
    config = transformer.peft_config[adapter_name].to_dict()
    # Pipeline-level LoRA files prefix each adapter setting with the component name (diffusers' packing).
    config = {PREFIX + k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    metadata = {"format": "pt", METADATA_KEY: json.dumps(config, default=str, indent=2, sort_keys=True)}
    with atomic_output(path, suffix=".tmp") as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def load_lora(transformer, path: str | os.PathLike, adapter_name: str = "default") -> None:
    """Load a LoRA file written by :func:`save_lora` into ``transformer`` (diffusers' loader)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"LoRA file {path} does not exist; make one with `tora2 finetune ... -o {path.name}`")
    from safetensors import safe_open

    state = load_file(str(path))
    if not any(k.startswith(PREFIX) and ".lora_A." in k for k in state):
        raise InputError(f"{path} holds no transformer LoRA weights (keys transformer.*.lora_A.weight); is it a LoRA file?")
    with safe_open(str(path), "pt") as handle:
        raw = (handle.metadata() or {}).get(METADATA_KEY)
    # The rank and alpha come from the metadata; without it diffusers would assume alpha = rank.
    metadata = json.loads(raw) if raw else None
    transformer.load_lora_adapter(state, prefix="transformer", adapter_name=adapter_name, metadata=metadata)
