"""Model-size configs (configs/model/*.yaml): architecture kwargs per component, validated.

A config has a ``transformer`` section (Tora2Transformer3DModel kwargs) and a ``personalization``
section (PersonalizationExtractor kwargs); other sections (``vae``, ``text_encoder``, ...) belong to
the pipeline. Unknown sections and keys are errors that list the allowed names.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from tora2.configuration import CONFIG_DIR, read_yaml
from tora2.errors import InputError

MODEL_CONFIG_DIR = CONFIG_DIR / "model"
SECTIONS = ("transformer", "personalization", "vae", "text_encoder", "tokenizer", "scheduler", "image_encoder")


def available_model_configs() -> list[str]:
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.yaml"))


def resolve_model_config_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = MODEL_CONFIG_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise InputError(
            f"unknown model config {str(name_or_path)!r}: use one of {', '.join(available_model_configs())} or a YAML path"
        )
    return candidate


def _check_kwargs(cls, kwargs: dict[str, Any], where: str) -> None:
    allowed = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def load_model_config(name_or_path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a model config; returns {section: kwargs}."""
    from tora2.models.personalization import PersonalizationExtractor
    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    path = resolve_model_config_path(name_or_path)
    data = read_yaml(path)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise InputError(f"{path}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}")
    if "transformer" not in data:
        raise InputError(f"{path}: missing the 'transformer' section")
    _check_kwargs(Tora2Transformer3DModel, data["transformer"], f"{path} transformer")
    if "personalization" in data:
        _check_kwargs(PersonalizationExtractor, data["personalization"], f"{path} personalization")
    return data


def build_transformer(config: dict[str, dict[str, Any]], device: str | torch.device = "cpu"):
    from tora2.models.transformer_tora2 import Tora2Transformer3DModel

    with torch.device(device):
        return Tora2Transformer3DModel(**config["transformer"])


def build_personalization(config: dict[str, dict[str, Any]], device: str | torch.device = "cpu"):
    from tora2.models.personalization import PersonalizationExtractor

    if "personalization" not in config:
        return None
    with torch.device(device):
        return PersonalizationExtractor(**config["personalization"])


def count_parameters(config: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Parameter counts per part, built on the meta device (no memory, no init time)."""
    transformer = build_transformer(config, device="meta")
    counts = {"cogvideox": 0, "tora": 0, "tora2": 0}
    for name, parameter in transformer.named_parameters():
        counts[transformer.part_of(name)] += parameter.numel()
    personalization = build_personalization(config, device="meta")
    counts["tora2_personalization"] = sum(p.numel() for p in personalization.parameters()) if personalization else 0
    counts["total"] = sum(counts.values())
    return {
        "CogVideoX backbone": counts["cogvideox"],
        "Tora trajectory parts": counts["tora"],
        "Tora2 additions (transformer)": counts["tora2"],
        "Tora2 personalization extractor": counts["tora2_personalization"],
        "total": counts["total"],
    }
