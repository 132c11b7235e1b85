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
from tora2.training.vae import (
    VAELossConfig,
    VAETrainConfig,
    load_decoder_pairs,
    load_vae_config,
    sprite_mask,
    train_vae,
    vae_batch,
    vae_loss,
)


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
    video, mask = vae_batch(dataset, [0, 1], 32, torch.Generator().manual_seed(0))
    assert video.shape == (2, 3, 9, 32, 32) and mask.shape == (2, 1, 9, 32, 32)
    again, _ = vae_batch(dataset, [0, 1], 32, torch.Generator().manual_seed(0))
    assert torch.equal(video, again)
    assert float(video.min()) >= -1.0 and float(video.max()) <= 1.0
    whole, _ = vae_batch(dataset, [0], 0, torch.Generator().manual_seed(0))
    assert torch.equal(whole[0], dataset[0]["video"].permute(1, 0, 2, 3))


class _ShiftVAE:
    """A stand-in VAE whose round trip adds ``offset`` (B, 3, F, H, W): the loss terms are known by hand."""

    def __init__(self, offset):
        self.offset = offset

    def encode(self, video):
        from types import SimpleNamespace

        zeros = torch.zeros_like(video)
        dist = SimpleNamespace(sample=lambda generator: video, mean=zeros, var=torch.ones_like(video), logvar=zeros)
        return SimpleNamespace(latent_dist=dist)

    def decode(self, latents):
        from types import SimpleNamespace

        return SimpleNamespace(sample=latents + self.offset)


def test_gradient_term_is_the_l1_of_the_error_s_pixel_differences():
    video = torch.zeros(1, 3, 1, 4, 4)
    offset = torch.zeros(1, 3, 1, 4, 4)
    offset[..., 1, 1] = 1.0  # one wrong pixel: 2 of 12 horizontal and 2 of 12 vertical differences are 1
    vae = _ShiftVAE(offset)
    base = vae_loss(vae, video, VAELossConfig(l1=1.0, l2=0.0, kl=0.0))[0]
    edged = vae_loss(vae, video, VAELossConfig(l1=1.0, l2=0.0, kl=0.0, gradient=3.0))[0]
    assert base.item() == pytest.approx(1 / 16)
    assert (edged - base).item() == pytest.approx(3.0 * 0.5 * (2 / 12 + 2 / 12))
    # A uniform error (a colour shift) has no edges: the term is zero.
    shifted = vae_loss(_ShiftVAE(torch.full((1, 3, 1, 4, 4), 0.5)), video, VAELossConfig(l1=0.0, l2=0.0, kl=0.0, gradient=1.0))
    assert shifted[0].item() == 0.0


def test_vae_batch_windows_and_crops_on_a_sprite():
    dataset = SyntheticClipDataset(6, seed=0, num_frames=9, height=64, width=64)
    video, mask = vae_batch(dataset, list(range(6)), 16, torch.Generator().manual_seed(1), window=3, crop_on_sprite=True)
    assert video.shape == (6, 3, 3, 16, 16) and mask.shape == (6, 1, 3, 16, 16)
    # Centred (± a quarter crop) on a sprite: every crop holds sprite pixels in its first frame.
    assert all(float(mask[b, 0, 0].sum()) > 0 for b in range(6))
    _, anywhere = vae_batch(dataset, list(range(6)), 16, torch.Generator().manual_seed(1), window=3)
    assert float(anywhere.mean()) < float(mask.mean())


def test_sprite_mask_covers_each_sprite_box():
    dataset = SyntheticClipDataset(1, seed=0, num_frames=3, height=64, width=64)
    _, _, entities = dataset.clip(0)
    mask = sprite_mask(entities, 3, 64, 64)
    assert mask.shape == (3, 64, 64)
    x, y = entities[0].points[1].round().astype(int)
    assert float(mask[1, y, x]) == 1.0
    assert 0.0 < float(mask.mean()) < 0.5


def test_sprite_weight_changes_the_total_not_the_reported_means():
    components = build_tiny_components("tiny", seed=0)
    dataset = SyntheticClipDataset(2, seed=0, num_frames=9, height=64, width=64)
    video, mask = vae_batch(dataset, [0, 1], 32, torch.Generator().manual_seed(0), crop_on_sprite=True)
    plain = vae_loss(components["vae"], video, VAELossConfig(), torch.Generator().manual_seed(0), mask)
    weighted = vae_loss(components["vae"], video, VAELossConfig(sprite_weight=4.0), torch.Generator().manual_seed(0), mask)
    assert torch.allclose(plain[1], weighted[1]) and torch.allclose(plain[2], weighted[2])
    assert not torch.allclose(plain[0], weighted[0])


def test_init_vae_starts_from_saved_weights_of_another_time_compression(tmp_path):
    from diffusers import AutoencoderKLCogVideoX

    from tora2.pipelines.components import build_vae
    from tora2.training.vae import load_initial_vae

    section = dict(block_out_channels=[8, 8], down_block_types=["CogVideoXDownBlock3D"] * 2,
                   up_block_types=["CogVideoXUpBlock3D"] * 2, latent_channels=4, layers_per_block=1, norm_num_groups=4)
    torch.manual_seed(0)
    source = build_vae({**section, "temporal_compression_ratio": 4})
    source.save_pretrained(tmp_path / "vae")
    torch.manual_seed(1)
    per_frame = build_vae({**section, "temporal_compression_ratio": 1})
    load_initial_vae(per_frame, tmp_path / "vae")
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in per_frame.state_dict().items())
    latents = per_frame.encode(torch.zeros(1, 3, 5, 16, 16)).latent_dist.mode()
    assert latents.shape == (1, 4, 5, 8, 8)  # no time compression
    narrower = build_vae({**section, "latent_channels": 2})
    with pytest.raises(InputError, match="different layers"):
        load_initial_vae(narrower, tmp_path / "vae")  # a latent is never narrowed (widened: widen_latent, below)
    # A wider encoder and decoder (same latent width) start as the saved VAE's function, 1 % noise apart.
    wide = build_vae({**section, "block_out_channels": [16, 16], "temporal_compression_ratio": 4}).eval()
    load_initial_vae(wide, tmp_path / "vae")
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1  # (B, C, F, H, W)
    with torch.no_grad():
        z = source.eval().encode(video).latent_dist.mode()  # (1, 4, 2, 8, 8)
        moved = (wide.encode(video).latent_dist.mode() - z).abs().max() / z.abs().max()
    assert 0 < float(moved) < 0.1
    assert wide.config.scaling_factor == source.config.scaling_factor
    with pytest.raises(InputError, match="not a saved VAE folder"):
        load_initial_vae(per_frame, tmp_path)
    assert isinstance(AutoencoderKLCogVideoX.from_pretrained(str(tmp_path / "vae")), AutoencoderKLCogVideoX)


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


def test_decoder_only_keeps_the_encoder_and_its_latent_scale(tmp_path):
    """decoder_only: a transformer trained on the loaded VAE's latents reads the same latents after
    (encoder and scaling factor unchanged); only the decoder learns."""
    components = build_tiny_components("tiny", seed=0)
    components["vae"].register_to_config(scaling_factor=0.77)
    components["vae"].save_pretrained(tmp_path / "saved")
    components["vae"].register_to_config(scaling_factor=1.0)  # what the model config would build
    before = {k: v.clone() for k, v in components["vae"].state_dict().items()}
    result = train_vae(_cfg(tmp_path, decoder_only=True, init_vae=str(tmp_path / "saved"), data=dict(
        num_frames=9, height=64, width=64, crop_size=0, num_clips=8)), components=components)
    after = components["vae"].state_dict()
    changed = {k.split(".")[0] for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed == {"decoder"}
    assert result.scaling_factor == pytest.approx(0.77) and components["vae"].config.scaling_factor == pytest.approx(0.77)
    with pytest.raises(InputError, match="decoder_only keeps the encoder as loaded; give init_vae"):
        _cfg(tmp_path, decoder_only=True)


def test_decoder_only_widens_a_saved_decoder_into_an_asymmetric_vae(tmp_path):
    """init_vae into a wider decoder: the saved encoder and scale kept exactly, the decoder widened
    (tora2/models/asymmetric_autoencoder.py), so the transformer's latents still decode."""
    from tora2.models.asymmetric_autoencoder import AsymmetricCogVideoXVAE

    components = build_tiny_components("tiny", seed=0)
    saved = components["vae"]
    saved.register_to_config(scaling_factor=0.77)
    saved.save_pretrained(tmp_path / "saved")
    config = {k: v for k, v in saved.config.items() if not k.startswith("_")}
    config["decoder_block_out_channels"] = [2 * w for w in config["block_out_channels"]]
    components["vae"] = wide = AsymmetricCogVideoXVAE(**{**config, "scaling_factor": 1.0})
    result = train_vae(_cfg(tmp_path, decoder_only=True, init_vae=str(tmp_path / "saved"), max_steps=1, data=dict(
        num_frames=9, height=64, width=64, crop_size=0, num_clips=8)), components=components)
    assert all(torch.equal(v, saved.state_dict()[k]) for k, v in wide.state_dict().items() if k.startswith("encoder."))
    assert result.scaling_factor == pytest.approx(0.77)
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline

    loaded = Tora2Pipeline.from_pretrained(result.pipeline_dir)  # diffusers finds the class's load method
    assert type(loaded.vae) is AsymmetricCogVideoXVAE
    assert list(loaded.vae.config.decoder_block_out_channels) == config["decoder_block_out_channels"]
    # a saved wide decoder continues training from itself (same widths: loaded as saved)
    trained = {k: v.clone() for k, v in wide.state_dict().items()}
    again = AsymmetricCogVideoXVAE(**{**config, "scaling_factor": 1.0})
    from tora2.training.vae import load_initial_vae

    load_initial_vae(again, result.pipeline_dir / "vae")
    assert all(torch.equal(v, trained[k]) for k, v in again.state_dict().items())


def test_a_vae_stage_keeps_the_pretrained_pipelines_reference_guidance(tmp_path):
    from tora2.pipelines.embedded import EMBEDDED_DIR
    from tora2.training.config import ModelSettings
    from tora2.training.loop import pretrained_reference_guidance

    assert pretrained_reference_guidance(ModelSettings(pretrained=str(EMBEDDED_DIR))) == 2.0  # model_index.json
    assert pretrained_reference_guidance(ModelSettings(config="configs/train/embedded-model.yaml")) is None


def test_vae_config_rejects_bad_values(tmp_path):
    with pytest.raises(InputError, match="crop_size is 40"):
        _cfg(tmp_path, data=dict(crop_size=40))
    with pytest.raises(InputError, match="num_frames is 1"):
        _cfg(tmp_path, data=dict(num_frames=1))
    with pytest.raises(InputError, match="data.window is 12"):
        _cfg(tmp_path, data=dict(window=12))
    with pytest.raises(InputError, match="loss.sprite_weight must be"):
        _cfg(tmp_path, loss=dict(sprite_weight=-1.0))
    # The frame rule depends on the VAE's temporal compression: checked when training starts.
    with pytest.raises(InputError, match="data.num_frames is 8; this VAE compresses 4× in time and needs k·4 \\+ 1 frames"):
        train_vae(_cfg(tmp_path, data=dict(num_frames=8)), components=build_tiny_components("tiny", seed=0))
    with pytest.raises(InputError, match="loss.gradient must be"):
        _cfg(tmp_path, loss=dict(gradient=-0.5))
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
    assert sum(p.numel() for _, p in params) == expected
    assert {name.split(".")[0] for name, _ in params} == {"transformer", "personalization"}


def test_stage_names_are_checked(tmp_path):
    with pytest.raises(InputError, match="stage 'everything' is not supported; use one of tora2, finetune, full"):
        load_train_config(None, {"stage": "everything"})


ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_load():
    cfg = load_train_config(ROOT / "configs/train/embedded.yaml")
    assert cfg.stage == "full" and cfg.data.buckets == [[64, 64]]
    vae_cfg = load_vae_config(ROOT / "configs/train/embedded-vae.yaml")
    assert vae_cfg.data.height == 64 and vae_cfg.model.config == "configs/train/embedded-model.yaml"
    pixel_vae = load_vae_config(ROOT / "configs/train/embedded-pixel-vae.yaml")
    pixel = load_train_config(ROOT / "configs/train/embedded-pixel.yaml")
    assert pixel_vae.model.vae["type"] == "pixel" and pixel.model.pretrained == f"{pixel_vae.output_dir}/pipeline"
    wide = load_vae_config(ROOT / "configs/train/embedded-vae-wide.yaml")
    assert wide.decoder_only and wide.model.vae["type"] == "cogvideox-asymmetric"
    # The linear-latent chain: L1 fits the autoencoder, L2 starts from its pipeline, L2b from L2's.
    linear_vae = load_vae_config(ROOT / "configs/train/embedded-pca-vae.yaml")
    linear = load_train_config(ROOT / "configs/train/embedded-pca.yaml")
    continued = load_train_config(ROOT / "configs/train/embedded-pca-continued.yaml")
    skip = load_train_config(ROOT / "configs/train/embedded-pca-skip.yaml")
    assert linear_vae.model.vae["latent_channels"] == 36 and linear_vae.model.transformer["entity_placement_channels"] == 37
    assert linear.model.pretrained == f"{linear_vae.output_dir}/pipeline"
    assert continued.model.pretrained == skip.model.pretrained == f"{linear.output_dir}/pipeline"
    assert skip.model.transformer == {"entity_placement_skip": True}
    decoder = load_vae_config(ROOT / "configs/train/embedded-pca-decoder.yaml")  # L4: L2's pipeline with a learned decoder
    assert decoder.decoder_only and decoder.model.pretrained == f"{linear.output_dir}/pipeline"
    assert decoder.init_vae == f"{linear.output_dir}/pipeline/vae" and decoder.model.vae["decoder_channels"] > 0


def test_collapse_time_kernels_keeps_still_videos_and_stops_frame_mixing():
    from tora2.pipelines.components import build_vae
    from tora2.training.vae import collapse_time_kernels

    section = dict(block_out_channels=[8, 8], down_block_types=["CogVideoXDownBlock3D"] * 2,
                   up_block_types=["CogVideoXUpBlock3D"] * 2, latent_channels=4, layers_per_block=1, norm_num_groups=4,
                   temporal_compression_ratio=1)
    torch.manual_seed(0)
    vae = build_vae(section)
    still = torch.rand(1, 3, 1, 16, 16).repeat(1, 1, 3, 1, 1) * 2 - 1  # (1, 3, 3, 16, 16)
    moved = still.clone()
    moved[:, :, 0, 4:10, 4:10] = 1.0  # a "sprite" painted into frame 0 only

    def leak() -> tuple[float, float]:
        """(change of frame 0's code, change of frames 1–2's codes) when the sprite is painted in."""
        with torch.no_grad():
            change = (vae.encode(moved).latent_dist.mode() - vae.encode(still).latent_dist.mode()).abs()
        return float(change[:, :, 0].max()), float(change[:, :, 1:].max())

    before = vae.encode(still).latent_dist.mode()
    _, leak_before = leak()
    assert collapse_time_kernels(vae) > 0
    assert torch.allclose(vae.encode(still).latent_dist.mode(), before, atol=1e-5)  # a still video codes the same
    own, leak_after = leak()
    # The causal kernels carried frame 0 into frames 1–2 as much as into frame 0 itself; what is left is
    # the GroupNorm statistics CogVideoX shares over time (a global shift, measured 0.93 → 0.24 here).
    assert own > 0.5 and leak_after < 0.3 * leak_before
    # Frozen: a training step leaves the earlier taps at zero.
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-2, weight_decay=0.01)
    vae.decode(vae.encode(moved).latent_dist.sample()).sample.abs().mean().backward()
    optimizer.step()
    taps = [m.conv.weight[:, :, :-1] for m in vae.modules() if type(m).__name__ == "CogVideoXCausalConv3d" and m.time_kernel_size > 1]
    assert taps and all(float(t.detach().abs().max()) == 0.0 for t in taps)


def test_vae_stage_fits_a_pixel_autoencoder_and_the_next_stage_starts_from_it(tmp_path):
    """configs/train/embedded-pixel-vae.yaml's recipe on tiny models: a pixel autoencoder has no
    weights, so the stage only sets its channel statistics and saves a pipeline whose transformer
    is rebuilt for the wider latent; model.init_weights_skip then loads every other saved layer."""
    from tora2.training.loop import build_components

    overrides = dict(model=dict(config="tiny", vae=dict(type="pixel", spatial_compression_ratio=8),
                                transformer=dict(in_channels=192, out_channels=192, temporal_compression_ratio=1)))
    result = train_vae(_cfg(tmp_path, **overrides))
    assert result.steps == [] and result.pipeline_dir == tmp_path / "vae" / "pipeline"
    vae = build_components(load_train_config(None, {"model.pretrained": str(result.pipeline_dir)}))["vae"]
    assert type(vae).__name__ == "PixelShuffleAutoencoder" and vae.config.latent_channels == 192
    assert float(vae.channel_std.min()) > 0.05 and not torch.equal(vae.channel_mean, torch.zeros(192))
    narrow = build_tiny_components("tiny", seed=3)["transformer"]
    narrow.save_pretrained(tmp_path / "narrow")
    with pytest.raises(InputError, match="has different layers .*patch_embed.proj.weight"):
        build_components(load_train_config(None, {"model.pretrained": str(result.pipeline_dir),
                                                  "model.init_weights": {"transformer": str(tmp_path / "narrow")}}))
    skip = ["patch_embed.proj.", "proj_out.", "traj_extractor.conv_in."]
    wide = build_components(load_train_config(None, {"model.pretrained": str(result.pipeline_dir),
                                                     "model.init_weights": {"transformer": str(tmp_path / "narrow")},
                                                     "model.init_weights_skip": {"transformer": skip}}))["transformer"]
    own, saved = wide.state_dict(), narrow.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items() if not k.startswith(tuple(skip)))
    assert own["patch_embed.proj.weight"].shape[1] == 192
    with pytest.raises(InputError, match="no layer of either model starts with 'proj_in.'"):
        build_components(load_train_config(None, {"model.pretrained": str(result.pipeline_dir),
                                                  "model.init_weights": {"transformer": str(tmp_path / "narrow")},
                                                  "model.init_weights_skip": {"transformer": ["proj_in."]}}))
    with pytest.raises(InputError, match="model.init_weights_skip names vae, which model.init_weights does not load"):
        build_components(load_train_config(None, {"model.pretrained": str(result.pipeline_dir),
                                                  "model.init_weights_skip": {"vae": ["x"]}}))


def test_decoder_only_trains_a_learned_decoder_on_a_fitted_linear_autoencoder(tmp_path):
    """configs/train/embedded-pca-decoder.yaml's recipe on tiny models: the fitted statistics and basis
    load from init_vae and stay exactly as saved (so are the latents a transformer was trained on);
    only the new decoder learns, from noisy latents and from (generated latents, clip) pairs."""
    from einops import rearrange

    from tora2.models.pixel_autoencoder import PixelShuffleAutoencoder

    linear = dict(type="pixel", spatial_compression_ratio=4, latent_channels=6)
    model = dict(config="tiny", vae=linear, transformer=dict(in_channels=6, out_channels=6, temporal_compression_ratio=1))
    fitted = train_vae(_cfg(tmp_path, output_dir=str(tmp_path / "fit"), model=model)).pipeline_dir
    saved = PixelShuffleAutoencoder.from_pretrained(fitted / "vae")
    # Pairs as scripts/decoder_pairs.py writes them: "generated" latents (here: clean ones plus noise).
    dataset = SyntheticClipDataset(8, 0, "train", 9, 64, 64, 3)
    frames = torch.stack([torch.from_numpy(dataset.clip(i)[0]) for i in range(3)])  # (N, F, H, W, 3) uint8
    video = rearrange(frames, "n f h w c -> n c f h w").float() / 127.5 - 1.0
    latents = saved.encode(video).latent_dist.mode() + 0.3 * torch.randn(3, 6, 9, 16, 16)  # (N, C, F, h, w)
    masks = torch.stack([sprite_mask(dataset.clip(i)[2], 9, 64, 64) for i in range(3)]).to(torch.uint8)
    pairs = tmp_path / "pairs.pt"
    store = {"latents": rearrange(latents, "n c f h w -> n f c h w"), "frames": frames, "targets": frames, "masks": masks,
             "errors": torch.tensor([0.5, 3.0, 1.0]), "ids": ["a", "b", "c"]}
    torch.save(store, pairs)
    learned = dict(model, pretrained=str(fitted), vae=dict(linear, decoder_channels=8, decoder_blocks=1))
    settings = dict(output_dir=str(tmp_path / "decoder"), model=learned, decoder_only=True, init_vae=str(fitted / "vae"),
                    decoder_pairs=str(pairs), pairs_batch_size=2, pairs_max_error=2.0, loss=dict(kl=0.0, latent_noise=0.5, sprite_weight=2.0),
                    data=dict(num_frames=9, height=64, width=64, crop_size=0, num_clips=8))
    result = train_vae(_cfg(tmp_path, **settings))
    assert result.steps == [1, 2] and all(torch.isfinite(torch.tensor(result.losses)))
    trained = PixelShuffleAutoencoder.from_pretrained(result.pipeline_dir / "vae")
    assert trained.config.decoder_channels == 8
    for name in ("channel_mean", "channel_std", "basis"):
        assert torch.equal(getattr(trained, name), getattr(saved, name)), name
    assert trained.decoder.conv_out.weight.abs().sum() > 0  # learned away from the zero residual
    assert torch.equal(trained.encode(video).latent_dist.mode(), saved.encode(video).latent_dist.mode())
    with pytest.raises(InputError, match="decoder_pairs trains a decoder for a fixed latent space; set decoder_only: true"):
        _cfg(tmp_path, decoder_pairs=str(pairs))
    with pytest.raises(InputError, match="decoder_pairs .*missing.pt is not a file; make it with scripts/decoder_pairs.py"):
        train_vae(_cfg(tmp_path, **{**settings, "decoder_pairs": str(tmp_path / "missing.pt")}))
    with pytest.raises(InputError, match="no pair has TrajError ≤ pairs_max_error=0.1 px and placement agreement"):
        train_vae(_cfg(tmp_path, **{**settings, "pairs_max_error": 0.1}))
    with pytest.raises(InputError, match="has no placement agreement .*rerun scripts/decoder_pairs.py on it"):
        train_vae(_cfg(tmp_path, **{**settings, "pairs_min_agreement": 0.6}))
    with pytest.raises(InputError, match="pairs_min_agreement is 1.5; use 0"):
        _cfg(tmp_path, **{**settings, "pairs_min_agreement": 1.5})
    torch.save({**store, "agreement": torch.tensor([0.9, 0.8, 0.3])}, pairs)
    # the two filters together: a (TrajError 0.5, agreement 0.9) passes; b fails the error, c the agreement
    kept = load_decoder_pairs(pairs, saved, max_error=2.0, min_agreement=0.6)
    assert torch.equal(kept["video"], video[:1])
    assert len(load_decoder_pairs(pairs, saved, min_agreement=0.6)["latents"]) == 2
    torch.save({**store, "latents": torch.zeros(3, 9, 5, 16, 16)}, pairs)
    with pytest.raises(InputError, match="holds 5-channel latents; this VAE has 6"):
        train_vae(_cfg(tmp_path, **settings))
    torch.save({k: v for k, v in store.items() if k not in ("targets", "errors")}, pairs)
    with pytest.raises(InputError, match="has no targets \\(an interrupted run\\); rerun scripts/decoder_pairs.py"):
        train_vae(_cfg(tmp_path, **settings))


def test_init_vae_into_more_latent_channels_starts_as_the_saved_function(tmp_path):
    """widen_latent: the first L latent channels are the saved VAE's, the extra ones are read by
    nothing yet, so decoding the widened VAE's latents gives the saved VAE's video."""
    from tora2.training.vae import load_initial_vae

    saved = build_tiny_components("tiny", seed=0)["vae"]
    saved.register_to_config(scaling_factor=0.77)
    saved.save_pretrained(tmp_path / "saved")
    config = {k: v for k, v in saved.config.items() if not k.startswith("_")}
    wide = type(saved)(**{**config, "latent_channels": 2 * config["latent_channels"], "scaling_factor": 1.0})
    load_initial_vae(wide, tmp_path / "saved")
    assert wide.config.scaling_factor == pytest.approx(0.77)
    video = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        narrow_mean = saved.encode(video).latent_dist.mean
        wide_dist = wide.encode(video).latent_dist
        channels = narrow_mean.shape[1]
        torch.testing.assert_close(wide_dist.mean[:, :channels], narrow_mean)
        torch.testing.assert_close(wide_dist.logvar[:, :channels], saved.encode(video).latent_dist.logvar)
        assert wide_dist.logvar[:, channels:].max() < -7  # the extra channels are near-deterministic
        torch.testing.assert_close(wide.decode(wide_dist.mean).sample, saved.decode(narrow_mean).sample)
    with pytest.raises(InputError, match="only adds channels"):
        from tora2.models.asymmetric_autoencoder import widen_latent

        widen_latent(saved, wide.state_dict())
