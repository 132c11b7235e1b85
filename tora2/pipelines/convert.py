"""Tora T2V diffusers folder → Tora2 pipeline folder (new modules at their identity init).

The source is the official Tora diffusers layout: ``model_index.json``, ``transformer/`` (CogVideoX
keys + ``traj_extractor.*`` + ``fuser.{i}.*``), ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``. The transformer loads strictly into ``Tora2Transformer3DModel`` (every source key
must exist here with the same shape); the Tora2 additions keep their identity init, so the result
computes Tora's output. The Tora2 widths (entity_dim, …) and the personalization extractor come
from a model config (``configs/model/*.yaml``) whose backbone matches. VAE, text encoder, tokenizer
and scheduler folders are copied unchanged. The output is written to a temporary sibling folder and
renamed into place.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from tora2.errors import InputError
from tora2.models.configs import available_model_configs, load_model_config

COPIED = ("vae", "text_encoder", "tokenizer", "scheduler")
BACKBONE_KEYS = ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "text_embed_dim")
UNSUPPORTED = {"ofs_embed_dim": None, "patch_size_t": None}  # CogVideoX 1.5 features this model does not have


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All ``*.safetensors`` weights of a diffusers model folder (sharded or not)."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise InputError(f"{directory} has no .safetensors weights; convert .bin weights with diffusers first")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def _pick_config(source: dict, name: str | None) -> dict:
    names = [name] if name else available_model_configs()
    for candidate in names:
        config = load_model_config(candidate)
        if all(config["transformer"].get(k) == source.get(k) for k in BACKBONE_KEYS):
            return config
        if name:
            mismatch = [f"{k}={config['transformer'].get(k)}≠{source.get(k)}" for k in BACKBONE_KEYS
                        if config["transformer"].get(k) != source.get(k)]
            raise InputError(f"model config {name!r} does not match the Tora transformer ({', '.join(mismatch)}); pick another --config")
    raise InputError(
        f"no model config matches the Tora transformer (num_layers={source.get('num_layers')}, "
        f"heads={source.get('num_attention_heads')}); pass --config, one of {', '.join(available_model_configs())}"
    )


def transformer_config(source: dict, state: dict[str, torch.Tensor], tora2: dict) -> dict:
    """Tora2Transformer3DModel kwargs: the source's CogVideoX keys, Tora's widths read from the
    weights, Tora2's widths from the model config."""
    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    for key, allowed in UNSUPPORTED.items():
        if source.get(key) not in (allowed,):
            raise InputError(f"Tora transformer config has {key}={source[key]}: CogVideoX 1.5 checkpoints are not supported; use a CogVideoX 1.0 Tora T2V model")
    params = inspect.signature(Tora2Transformer3DModel.__init__).parameters
    kwargs = {k: v for k, v in source.items() if k in params}
    if "traj_extractor.conv_in.weight" not in state:
        raise InputError("the transformer has no traj_extractor weights: not a Tora checkpoint (for plain CogVideoX, train the Tora parts first)")
    conv_in = state["traj_extractor.conv_in.weight"]  # (Cm, Cin·p·p, 3, 3)
    patch = int(kwargs.get("patch_size", 2))
    kwargs["motion_channels"] = int(conv_in.shape[0])
    motion_in = int(conv_in.shape[1]) // (patch * patch)
    kwargs["motion_in_channels"] = None if motion_in == kwargs.get("in_channels") else motion_in
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("traj_extractor.body.")}
    kwargs["motion_blocks_per_level"] = len(blocks) // int(kwargs["num_layers"])
    tora2_keys = [n for n in params if n.startswith(("entity_", "num_personalization", "binder", "contrastive", "max_entities",
                                                     "motion_frequencies", "block_order", "motion_norm_groups"))]
    kwargs.update({k: tora2[k] for k in tora2_keys if k in tora2})
    return kwargs


def convert_tora(src: str | os.PathLike, dst: str | os.PathLike, config: str | None = None, overwrite: bool = False) -> dict:
    """Convert the Tora folder ``src`` into a Tora2 pipeline folder ``dst``; returns a report dict
    (source keys loaded, Tora2 keys left at their identity init, config used)."""
    from tora2.models.configs import build_personalization
    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    src, dst = Path(src), Path(dst)
    if not (src / "model_index.json").is_file():
        raise InputError(f"{src} has no model_index.json: pass a Tora T2V diffusers folder")
    missing = [name for name in ("transformer", *COPIED) if not (src / name).is_dir()]
    if missing:
        raise InputError(f"{src} lacks the component folder(s) {', '.join(missing)}; a Tora T2V folder has transformer, {', '.join(COPIED)}")
    if dst.exists() and not overwrite:
        raise InputError(f"{dst} already exists; choose a new destination or pass --overwrite")
    source = json.loads((src / "transformer" / "config.json").read_text())
    state = read_state_dict(src / "transformer")
    model_config = _pick_config(source, config)
    kwargs = transformer_config(source, state, model_config["transformer"])
    transformer = Tora2Transformer3DModel(**kwargs)
    try:
        left = transformer.load_tora_state_dict(state)
    except ValueError as error:
        raise InputError(f"{src}/transformer does not load strictly: {error}") from None
    personalization = build_personalization(model_config)

    index = json.loads((src / "model_index.json").read_text())
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp"))
    try:
        for name in COPIED:
            shutil.copytree(src / name, tmp / name)
        transformer.save_pretrained(tmp / "transformer")
        out_index = {
            "_class_name": "Tora2Pipeline",
            "_diffusers_version": index.get("_diffusers_version"),
            **{name: index[name] for name in COPIED if name in index},
            "transformer": ["tora2.models.transformer_tora2", "Tora2Transformer3DModel"],
            "personalization": [None, None],
            "image_encoder": [None, None],
            "face_encoder": [None, None],
        }
        if personalization is not None:
            personalization.save_pretrained(tmp / "personalization")
            out_index["personalization"] = ["tora2.models.personalization", "PersonalizationExtractor"]
        (tmp / "model_index.json").write_text(json.dumps(out_index, indent=2) + "\n")
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"loaded": len(state), "identity_init": len(left), "config": config or "auto", "destination": str(dst)}
