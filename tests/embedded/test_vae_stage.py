"""Stage ``vae`` (tora2/training/vae.py) and stage ``full`` (select_trainable) on tiny models."""

import json
from pathlib import Path

import pytest
import torch

from tora2.errors import InputError
from tora2.pipelines.components import build_tiny_components
from tora2.synthetic import SyntheticClipDataset
from tora2.training.config import TrainConfig, load_train_config
from tora2.training.loop import select_trainable
from tora2.training.vae import VAETrainConfig, load_vae_config, train_vae, vae_batch


def _cfg(tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "vae"), max_steps=2, batch_size=1, log_every=1, checkpoint_every=0,
                scaling_clips=2, data=dict(num_frames=9, height=64, width=64, crop_size=32, num_clips=8))
    base.update(overrides)
    path = tmp_path / "vae.yaml"
    import yaml

    path.write_text(yaml.safe_dump(base))
    return load_vae_config(path)


def test_vae_batch_crops_every_frame_at_the_same_place():
    dataset = SyntheticClipDataset(2, seed=0, num_frames=9, height=64, width=64)
    video = vae_batch(dataset, [0, 1], 32, torch.Generator().manual_seed(0))
    assert video.shape == (2, 3, 9, 32, 32)
    again = vae_batch(dataset, [0, 1], 32, torch.Generator().manual_seed(0))
    assert torch.equal(video, again)
    assert float(video.min()) >= -1.0 and float(video.max()) <= 1.0


def test_train_vae_writes_pipeline_losses_and_scaling_factor(tmp_path):
    components = build_tiny_components("tiny", seed=0)
    before = {k: v.clone() for k, v in components["vae"].state_dict().items()}
    transformer_before = {k: v.clone() for k, v in components["transformer"].state_dict().items()}
    result = train_vae(_cfg(tmp_path), components=components)
    assert result.steps == [1, 2]
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses)
    changed = [k for k, v in components["vae"].state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 10
    # Only the VAE trains in this stage.
    assert all(torch.equal(v, transformer_before[k]) for k, v in components["transformer"].state_dict().items())
    assert result.scaling_factor > 0
    saved = json.loads((tmp_path / "vae" / "pipeline" / "vae" / "config.json").read_text())
    assert saved["scaling_factor"] == pytest.approx(result.scaling_factor)
    losses = json.loads((tmp_path / "vae" / "losses.json").read_text())
    assert losses["step"] == [1, 2] and len(losses["l1"]) == 2
    assert (tmp_path / "vae" / "pipeline" / "model_index.json").is_file()
    assert (tmp_path / "vae" / "config.yaml").is_file()


def test_vae_config_rejects_bad_values(tmp_path):
    with pytest.raises(InputError, match="crop_size is 40"):
        _cfg(tmp_path, data=dict(crop_size=40))
    with pytest.raises(InputError, match="num_frames is 8"):
        _cfg(tmp_path, data=dict(num_frames=8))
    with pytest.raises(InputError, match="loss.kl must be"):
        _cfg(tmp_path, loss=dict(kl=-1.0))
    with pytest.raises(InputError, match="bogus"):
        _cfg(tmp_path, bogus=1)
    assert VAETrainConfig().data.crop_size == 64


def test_stage_full_trains_the_whole_transformer_and_dpe_only():
    components = build_tiny_components("tiny", seed=0)
    params = select_trainable(TrainConfig(stage="full"), components)
    transformer, personalization = components["transformer"], components["personalization"]
    assert all(p.requires_grad for p in transformer.parameters())
    assert all(p.requires_grad for p in personalization.parameters())
    for name in ("vae", "text_encoder", "image_encoder"):
        assert not any(p.requires_grad for p in components[name].parameters()), name
    expected = sum(p.numel() for p in transformer.parameters()) + sum(p.numel() for p in personalization.parameters())
    assert sum(p.numel() for p in params) == expected


def test_stage_names_are_checked(tmp_path):
    with pytest.raises(InputError, match="stage 'everything' is not supported; use one of tora2, finetune, full"):
        load_train_config(None, {"stage": "everything"})


ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_load():
    cfg = load_train_config(ROOT / "configs/train/embedded.yaml")
    assert cfg.stage == "full" and cfg.data.buckets == [[64, 64]]
    vae_cfg = load_vae_config(ROOT / "configs/train/embedded-vae.yaml")
    assert vae_cfg.data.height == 64 and vae_cfg.model.config == "configs/train/embedded-model.yaml"
