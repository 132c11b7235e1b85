"""PixelShuffleAutoencoder: the lossless pixel-space "VAE" (tora2/models/pixel_autoencoder.py)."""

import numpy as np
import pytest
import torch

from tora2.errors import InputError
from tora2.models.configs import load_model_config
from tora2.models.pixel_autoencoder import PixelShuffleAutoencoder
from tora2.pipelines.components import build_tiny_components, build_vae, vae_compression
from tora2.pipelines.conditioning import encode_video
from tora2.pipelines.model_info import read_model_info
from tora2.pipelines.pipeline_tora2 import Tora2Pipeline
from tora2.specs import EntitySpec


def test_round_trip_is_exact_and_statistics_normalise():
    vae = build_vae({"type": "pixel", "spatial_compression_ratio": 4})
    assert isinstance(vae, PixelShuffleAutoencoder) and vae.config.latent_channels == 48
    assert vae_compression(vae) == (1, 4)
    video = torch.rand(2, 3, 5, 16, 24) * 1.6 - 0.9  # (B, 3, F, H, W)
    vae.set_statistics(video)
    posterior = vae.encode(video).latent_dist
    latents = posterior.mode()
    assert latents.shape == (2, 48, 5, 4, 6)
    assert torch.equal(posterior.sample(torch.Generator().manual_seed(0)), latents)  # no posterior noise
    per_channel = latents.transpose(0, 1).reshape(48, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(48), atol=1e-5)
    assert torch.allclose(per_channel.std(1), torch.ones(48), atol=1e-4)
    assert torch.allclose(vae.decode(latents).sample, video, atol=1e-6)
    # A pixel block lands in the channels of its own latent pixel: the fold is local.
    bumped = video.clone()
    bumped[0, 1, 2, 5, 9] += 0.5
    changed = (vae.encode(bumped).latent_dist.mode() - latents).abs().sum(dim=1)  # (B, F, h, w)
    assert changed.nonzero().tolist() == [[0, 2, 1, 2]]


def test_fewer_channels_keep_the_leading_principal_components(tmp_path):
    vae = build_vae({"type": "pixel", "spatial_compression_ratio": 2, "latent_channels": 3})
    assert vae.config.latent_channels == 3 and vae.basis.shape == (12, 3)
    # Videos whose normalised 2×2 blocks lie in a 3-dimensional subspace: three random directions mixed
    # by random weights per block. A 3-component autoencoder fitted on them must be exact on new ones.
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(12, 3, generator=generator)

    def videos(n):
        weights = torch.randn(n, 3, 4, 6, 8, generator=generator)  # (B, 3, F, h, w)
        blocks = torch.einsum("nk,bkfhw->bnfhw", directions, weights)  # (B, 12, F, h, w)
        return vae._unfold(blocks * 0.2)  # (B, 3, F, 12, 16)

    fit = videos(3)
    vae.set_statistics(fit)
    basis = vae.basis.double()
    assert torch.allclose(basis.T @ basis, torch.eye(3, dtype=torch.float64), atol=1e-5)  # orthonormal
    video = videos(2)
    latents = vae.encode(video).latent_dist.mode()
    assert latents.shape == (2, 3, 4, 6, 8)
    assert torch.allclose(vae.decode(latents).sample, video, atol=1e-4)
    # On anything else decoding is a projection: encoding what it decodes gives back the same latents.
    noise = torch.rand(1, 3, 4, 12, 16, generator=generator) * 2 - 1
    z = vae.encode(noise).latent_dist.mode()
    assert not torch.allclose(vae.decode(z).sample, noise, atol=1e-2)
    assert torch.allclose(vae.encode(vae.decode(z).sample).latent_dist.mode(), z, atol=1e-4)
    # The basis is saved with the statistics and loads back through the diffusers layout.
    vae.save_pretrained(tmp_path)
    loaded = PixelShuffleAutoencoder.from_pretrained(tmp_path)
    assert torch.equal(loaded.basis, vae.basis) and torch.equal(loaded.encode(video).latent_dist.mode(), latents)
    # Whitened components: the same round trip, every latent channel at unit variance.
    whitened = build_vae({"type": "pixel", "spatial_compression_ratio": 2, "latent_channels": 3, "whiten_components": True})
    whitened.set_statistics(fit)
    assert torch.allclose(whitened.basis, vae.basis, atol=1e-6)
    white = whitened.encode(video).latent_dist.mode()  # (B, 3, F, h, w)
    assert torch.allclose(white * whitened.component_std.view(1, 3, 1, 1, 1), latents, atol=1e-4)
    assert torch.allclose(whitened.decode(white).sample, video, atol=1e-4)
    fitted = whitened.encode(fit).latent_dist.mode().transpose(0, 1).reshape(3, -1)  # (3, B·F·h·w)
    assert torch.allclose(fitted.std(dim=1), torch.ones(3), atol=1e-3)
    # Lossless: no basis, so weights saved before the projection existed keep their keys.
    assert sorted(build_vae({"type": "pixel"}).state_dict()) == ["channel_mean", "channel_std"]


def linear_and_learned(seed: int, **learned_parts):
    """A 5-component linear autoencoder (r = 2) and the same with ``learned_parts``, both fitted on one
    random video (B 2, F 3, 8×12): (linear, learned, video, the linear latents (B, 5, F, 4, 6))."""
    linear = build_vae({"type": "pixel", "spatial_compression_ratio": 2, "latent_channels": 5})
    learned = build_vae({"type": "pixel", "spatial_compression_ratio": 2, "latent_channels": 5, **learned_parts})
    video = torch.rand(2, 3, 3, 8, 12, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (B, 3, F, H, W)
    linear.set_statistics(video)
    learned.set_statistics(video)
    return linear, learned, video, linear.encode(video).latent_dist.mode()


def test_a_learned_decoder_starts_as_the_linear_decode_and_saves_with_the_basis(tmp_path):
    linear, learned, video, latents = linear_and_learned(1, decoder_channels=8, decoder_blocks=2)
    assert torch.equal(learned.encode(video).latent_dist.mode(), latents)  # the encoder is the linear one
    assert torch.allclose(learned.decode(latents).sample, linear.decode(latents).sample, atol=1e-6)  # zero residual
    with torch.no_grad():
        learned.decoder.conv_out.bias.fill_(0.1)  # a residual of 0.1 on every normalised block value
    shift = (learned.decode(latents).sample - linear.decode(latents).sample)  # (B, 3, F, H, W)
    std = learned._unfold(learned.channel_std.view(1, 12, 1, 1, 1).expand(1, 12, 1, 4, 6))  # per pixel
    assert torch.allclose(shift, 0.1 * std.expand_as(shift), atol=1e-5)
    # Frames are decoded one by one: changing frame 1's latents leaves frames 0 and 2 as they were.
    bumped = latents.clone()
    bumped[:, :, 1] += 1.0
    same = learned.decode(bumped).sample - learned.decode(latents).sample
    assert same[:, :, [0, 2]].abs().max() == 0 and same[:, :, 1].abs().max() > 0
    learned.save_pretrained(tmp_path)
    loaded = PixelShuffleAutoencoder.from_pretrained(tmp_path)
    assert loaded.config.decoder_channels == 8 and torch.equal(loaded.basis, learned.basis)
    assert torch.equal(loaded.decode(latents).sample, learned.decode(latents).sample)
    assert linear.decoder is None and not any(k.startswith("decoder.") for k in linear.state_dict())


def test_a_learned_encoder_starts_as_the_linear_code_and_trains_per_frame(tmp_path):
    _, learned, video, latents = linear_and_learned(2, encoder_channels=8, encoder_blocks=1)
    assert torch.allclose(learned.encode(video).latent_dist.mode(), latents, atol=1e-6)  # zero residual
    with torch.no_grad():
        learned.encoder.conv_out.bias.copy_(torch.arange(5.0))  # latent channel k moves by k
    shifted = learned.encode(video).latent_dist.mode() - latents
    assert torch.allclose(shifted, torch.arange(5.0).view(1, 5, 1, 1, 1).expand_as(shifted), atol=1e-5)
    bumped = video.clone()
    bumped[:, :, 1] += 0.5  # frame 1 only: the other frames' latents stay
    moved = learned.encode(bumped).latent_dist.mode() - learned.encode(video).latent_dist.mode()
    assert moved[:, :, [0, 2]].abs().max() == 0 and moved[:, :, 1].abs().max() > 0
    assert {n.split(".")[0] for n, _ in learned.named_parameters()} == {"encoder"}  # the basis is a buffer
    learned.save_pretrained(tmp_path)
    loaded = PixelShuffleAutoencoder.from_pretrained(tmp_path)
    assert torch.equal(loaded.encode(video).latent_dist.mode(), learned.encode(video).latent_dist.mode())


def test_bad_settings_are_one_line_errors():
    with pytest.raises(InputError, match="decoder_channels=-1, decoder_blocks=2, encoder_channels=0, encoder_blocks=2 must be ≥ 0"):
        build_vae({"type": "pixel", "decoder_channels": -1})
    with pytest.raises(InputError, match="encoder_channels needs latent_channels below in_channels · r²"):
        build_vae({"type": "pixel", "encoder_channels": 8})
    for bad in (0, 49):
        with pytest.raises(InputError, match=f"latent_channels={bad} must be 1 … in_channels · r² = 48"):
            build_vae({"type": "pixel", "spatial_compression_ratio": 4, "latent_channels": bad})
    with pytest.raises(InputError, match="whiten_components needs latent_channels below in_channels · r²"):
        build_vae({"type": "pixel", "whiten_components": True})
    with pytest.raises(InputError, match="never compresses time"):
        build_vae({"type": "pixel", "temporal_compression_ratio": 4})
    with pytest.raises(InputError, match="vae type 'jpeg' is not supported; use one of cogvideox, cogvideox-asymmetric, pixel"):
        build_vae({"type": "jpeg"})
    with pytest.raises(InputError, match="frame size 18×16 is not a multiple of 4"):
        build_vae({"type": "pixel"}).encode(torch.zeros(1, 3, 1, 18, 16))


def pixel_pipeline() -> Tora2Pipeline:
    config = load_model_config("tiny")
    config["vae"] = {"type": "pixel", "spatial_compression_ratio": 2, "sample_height": 16, "sample_width": 16}
    config["transformer"].update(in_channels=12, out_channels=12, temporal_compression_ratio=1,
                                 sample_height=8, sample_width=8, sample_frames=5)
    pipe = Tora2Pipeline(**build_tiny_components(config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_pipeline_generates_saves_and_loads_through_the_diffusers_layout(tmp_path):
    pipe = pixel_pipeline()
    image = np.zeros((12, 12, 4), np.uint8)
    image[..., 0], image[2:10, 2:10, 3] = 230, 255
    path = np.stack([np.linspace(2, 13, 5), np.linspace(3, 12, 5)], axis=1)  # (F, 2) pixels
    kwargs = dict(entities=[EntitySpec("cat", image=image, trajectory=path)], num_frames=5, height=16, width=16,
                  num_inference_steps=2)
    frames = pipe("a cat", generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert frames.shape == (1, 5, 16, 16, 3) and np.isfinite(frames).all()
    pipe.save_pretrained(tmp_path)
    loaded = Tora2Pipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.vae).__name__ == "PixelShuffleAutoencoder"
    assert np.array_equal(loaded("a cat", generator=torch.Generator().manual_seed(0), **kwargs).frames, frames)
    info = read_model_info(tmp_path)
    assert (info.spatial, info.temporal, info.height, info.width, info.frames) == (2, 1, 16, 16, 5)
    # The training encoder and the pipeline's decoder are exact inverses: the autoencoder ceiling is the render.
    video = torch.rand(1, 5, 3, 16, 16) * 2 - 1  # (B, F, 3, H, W)
    latents = encode_video(loaded.vae, video)  # (B, F, C, h, w)
    assert torch.allclose(loaded.decode_latents(latents).permute(0, 2, 1, 3, 4), video, atol=1e-5)
