"""AsymmetricCogVideoXVAE, widen_decoder and widen_encoder (tora2/models/asymmetric_autoencoder.py)."""

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX

from tora2.errors import InputError
from tora2.models.asymmetric_autoencoder import AsymmetricCogVideoXVAE, widen_decoder, widen_encoder
from tora2.pipelines.components import build_vae

SMALL = dict(block_out_channels=(8, 16), down_block_types=("CogVideoXDownBlock3D",) * 2,
             up_block_types=("CogVideoXUpBlock3D",) * 2, latent_channels=4, layers_per_block=1, norm_num_groups=4,
             temporal_compression_ratio=1, sample_height=16, sample_width=16)


def _narrow() -> AutoencoderKLCogVideoX:
    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(**SMALL).eval()


def test_widened_decoder_computes_the_narrow_one_and_keeps_the_encoder():
    narrow = _narrow()
    wide = AsymmetricCogVideoXVAE(**SMALL, decoder_block_out_channels=(16, 32)).eval()
    assert sum(p.numel() for p in wide.decoder.parameters()) > 3 * sum(p.numel() for p in narrow.decoder.parameters())
    wide.encoder.load_state_dict(narrow.encoder.state_dict())
    widen_decoder(wide, narrow.state_dict(), noise=0.0)
    video = torch.rand(1, 3, 3, 16, 16) * 2 - 1  # (B, C, F, H, W)
    with torch.no_grad():
        z = narrow.encode(video).latent_dist.mode()  # (1, 4, 3, 4, 4)
        assert torch.equal(wide.encode(video).latent_dist.mode(), z)
        assert torch.allclose(wide.decode(z).sample, narrow.decode(z).sample, atol=1e-5)
        widen_decoder(wide, narrow.state_dict(), noise=0.01, generator=torch.Generator().manual_seed(0))
        moved = (wide.decode(z).sample - narrow.decode(z).sample).abs().max()
    assert 0 < float(moved) < 0.5  # copies told apart, the function nearly kept


def test_asymmetric_vae_saves_and_loads_in_the_diffusers_layout(tmp_path):
    vae = build_vae({"type": "cogvideox-asymmetric", **SMALL, "decoder_block_out_channels": [16, 32]})
    assert isinstance(vae, AsymmetricCogVideoXVAE) and isinstance(vae, AutoencoderKLCogVideoX)
    vae.save_pretrained(tmp_path)
    again = AsymmetricCogVideoXVAE.from_pretrained(tmp_path)
    assert list(again.config.decoder_block_out_channels) == [16, 32]
    z = torch.randn(1, 4, 2, 4, 4)
    with torch.no_grad():
        assert torch.equal(again.decode(z).sample, vae.decode(z).sample)
    plain = build_vae({"type": "cogvideox-asymmetric", **SMALL})  # no decoder fields: the parent's layers
    assert plain.decoder.state_dict().keys() == _narrow().decoder.state_dict().keys()


def test_widening_errors_name_the_fix():
    narrow = _narrow()
    with pytest.raises(InputError, match="not a multiple of the source's"):
        widen_decoder(AsymmetricCogVideoXVAE(**SMALL, decoder_block_out_channels=(12, 16)), narrow.state_dict())
    with pytest.raises(InputError, match="give decoder_layers_per_block equal"):
        widen_decoder(AsymmetricCogVideoXVAE(**SMALL, decoder_layers_per_block=2), narrow.state_dict())
    with pytest.raises(InputError, match="multiple of norm_num_groups"):
        AsymmetricCogVideoXVAE(**SMALL, decoder_block_out_channels=(6, 16))
    with pytest.raises(InputError, match="one width per up block"):
        AsymmetricCogVideoXVAE(**SMALL, decoder_block_out_channels=(16,))


def test_widened_encoder_gives_the_narrow_ones_latents():
    narrow = _narrow()
    wide = AutoencoderKLCogVideoX(**{**SMALL, "block_out_channels": (16, 32)}).eval()  # encoder and decoder 2×
    widen_encoder(wide, narrow.state_dict(), noise=0.0)
    widen_decoder(wide, narrow.state_dict(), noise=0.0)
    video = torch.rand(1, 3, 3, 16, 16) * 2 - 1  # (B, C, F, H, W)
    with torch.no_grad():
        z = narrow.encode(video).latent_dist.mode()  # (1, 4, 3, 4, 4)
        assert torch.allclose(wide.encode(video).latent_dist.mode(), z, atol=1e-5)
        assert torch.allclose(wide.decode(z).sample, narrow.decode(z).sample, atol=1e-5)
    with pytest.raises(InputError, match="encoder .* not a multiple of the source's"):
        widen_encoder(AutoencoderKLCogVideoX(**{**SMALL, "block_out_channels": (12, 16), "norm_num_groups": 4}),
                      narrow.state_dict())
