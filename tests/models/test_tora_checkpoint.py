"""The public Tora T2V (CogVideoX-5B) transformer's keys load into the cogvideox-5b-tora2 config.

The official key list is written out here from the structure of ``ToraTransformer3DModel`` in
alibaba/Tora (diffusers-version): all CogVideoX keys unchanged, ``traj_extractor`` with a 2×2 patchify of
16 latent channels into 128 channels and 42 levels × 2 pre-activation ResNet blocks (BatchNorm,
no skip conv), and one ``fuser.{i}`` (MGF) per block. Everything is built on the meta device.
"""

import torch
from diffusers import CogVideoXTransformer3DModel

from tora2.models.configs import build_transformer, load_model_config

from .tiny import COGVIDEOX_KEYS


def official_tora_5b_shapes():
    config = load_model_config("cogvideox-5b-tora2")["transformer"]
    with torch.device("meta"):
        cogvideox = CogVideoXTransformer3DModel(**{k: config[k] for k in COGVIDEOX_KEYS})
    shapes = {k: tuple(v.shape) for k, v in cogvideox.state_dict().items()}
    dim, motion = 48 * 64, 128
    shapes["traj_extractor.conv_in.weight"] = (motion, 16 * 2 * 2, 3, 3)
    shapes["traj_extractor.conv_in.bias"] = (motion,)
    for k in range(42 * 2):
        for conv in ("block1", "block2"):
            shapes[f"traj_extractor.body.{k}.{conv}.weight"] = (motion, motion, 3, 3)
            shapes[f"traj_extractor.body.{k}.{conv}.bias"] = (motion,)
        for bn in ("bn1", "bn2"):
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"traj_extractor.body.{k}.{bn}.{name}"] = (motion,)
            shapes[f"traj_extractor.body.{k}.{bn}.num_batches_tracked"] = ()
    for i in range(42):
        for which in ("gamma", "beta"):
            shapes[f"fuser.{i}.flow_{which}_spatial.weight"] = (dim // 4, motion, 3, 3)
            shapes[f"fuser.{i}.flow_{which}_spatial.bias"] = (dim // 4,)
            shapes[f"fuser.{i}.flow_{which}_temporal.weight"] = (dim, dim // 4, 3)
            shapes[f"fuser.{i}.flow_{which}_temporal.bias"] = (dim,)
        shapes[f"fuser.{i}.flow_cond_norm.weight"] = (dim,)
        shapes[f"fuser.{i}.flow_cond_norm.bias"] = (dim,)
    return shapes


def test_official_tora_5b_keys_load_strictly():
    official = official_tora_5b_shapes()
    assert len([k for k in official if k.startswith("fuser.")]) == 42 * 10
    model = build_transformer(load_model_config("cogvideox-5b-tora2"), device="meta")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(k for k in official if k not in own) == []
    assert sorted(k for k in official if own[k] != official[k]) == []
    left = [k for k in own if k not in official]
    assert left and {model.part_of(k) for k in left} == {"tora2"}
    state = {k: torch.empty(shape, device="meta") for k, shape in official.items()}
    assert sorted(model.load_tora_state_dict(state)) == sorted(left)


def test_tora_parts_of_the_5b_config_are_about_694m_parameters():
    official = official_tora_5b_shapes()
    tora = sum(torch.Size(s).numel() for k, s in official.items() if k.startswith(("traj_extractor.", "fuser.")) and "running" not in k and "num_batches" not in k)
    assert tora == 694_352_000


def test_a_mismatched_checkpoint_is_rejected_with_the_key():
    model = build_transformer(load_model_config("cogvideox-2b-tora2"), device="meta")
    official = {k: torch.empty(s, device="meta") for k, s in official_tora_5b_shapes().items()}
    try:
        model.load_tora_state_dict(official)
    except ValueError as error:
        assert "does not fit this config" in str(error)
    else:
        raise AssertionError("a 5B checkpoint must not load into the 2B config")
