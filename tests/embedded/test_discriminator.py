"""The VAE stage's adversarial term: tora2/training/discriminator.py and loss.adversarial in tora2/training/vae.py."""

import json

import pytest
import torch
import torch.nn.functional as F

from tora2.errors import InputError
from tora2.pipelines.components import build_tiny_components
from tora2.training.discriminator import Adversary, PatchDiscriminator, discriminator_loss, generator_loss
from tora2.training.vae import train_vae

from tests.embedded.test_vae_stage import _cfg


def _sharp_and_blurred(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Videos (2, 3, 2, 32, 32) of random hard-edged squares, and the same after a 3×3 box blur."""
    g = torch.Generator().manual_seed(seed)
    video = -torch.ones(2, 3, 2, 32, 32)
    for b in range(2):
        for _ in range(3):
            y, x = torch.randint(0, 24, (2,), generator=g).tolist()
            video[b, :, :, y : y + 8, x : x + 8] = torch.rand(3, 1, 1, 1, generator=g) * 2 - 1
    frames = video.permute(0, 2, 1, 3, 4).reshape(-1, 3, 32, 32)  # (B·F, 3, H, W)
    blurred = F.avg_pool2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return video, blurred.reshape(2, 2, 3, 32, 32).permute(0, 2, 1, 3, 4)


def test_patch_discriminator_gives_one_logit_per_patch_of_each_frame():
    disc = PatchDiscriminator([8, 16, 16])
    logits = disc(torch.zeros(2, 3, 5, 64, 64))
    assert logits.shape == (10, 1, 8, 8)  # B·F frames, 64 / 2³ patches a side
    assert PatchDiscriminator([8, 16])(torch.zeros(1, 3, 1, 32, 32)).shape == (1, 1, 8, 8)


def test_the_discriminator_learns_to_tell_sharp_frames_from_blurred_ones():
    """What the term is for: blur is what it penalises. Hinge loss 2 at the start (logits ≈ 0)."""
    torch.manual_seed(0)
    adversary = Adversary([8, 16, 16], learning_rate=1e-3, seed=0)
    first = None
    for step in range(60):
        real, blurred = _sharp_and_blurred(step)
        loss = adversary.step(real, blurred)
        first = loss if first is None else first
    real, blurred = _sharp_and_blurred(1000)  # new squares
    with torch.no_grad():
        assert adversary.discriminator(real).mean() > adversary.discriminator(blurred).mean() + 0.5
        held_out = discriminator_loss(adversary.discriminator, real, blurred).item()
    assert first == pytest.approx(2.0, abs=0.3) and held_out < first - 0.15


def test_the_decoder_term_leaves_the_discriminator_alone_and_pushes_the_decoded_frames():
    adversary = Adversary([8, 16], learning_rate=2e-4, seed=0)
    fake = torch.zeros(1, 3, 1, 16, 16, requires_grad=True)
    term = adversary.generator_term(fake)
    term.backward()
    assert all(p.grad is None for p in adversary.discriminator.parameters())
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.requires_grad for p in adversary.discriminator.parameters())  # it still learns in its own step
    assert term.item() == pytest.approx(generator_loss(adversary.discriminator, fake).item())


def test_decoder_only_with_the_adversarial_term_trains_the_decoder_and_logs_both_losses(tmp_path):
    components = build_tiny_components("tiny", seed=0)
    components["vae"].save_pretrained(tmp_path / "saved")
    before = {k: v.clone() for k, v in components["vae"].state_dict().items()}
    cfg = _cfg(tmp_path, decoder_only=True, init_vae=str(tmp_path / "saved"), max_steps=3,
               loss=dict(adversarial=0.1, adversarial_start=1), discriminator=dict(channels=[8, 16, 16]),
               data=dict(num_frames=9, height=64, width=64, crop_size=0, num_clips=8))
    train_vae(cfg, components=components)
    changed = {k.split(".")[0] for k, v in components["vae"].state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"decoder"}
    losses = json.loads((tmp_path / "vae" / "losses.json").read_text())
    assert len(losses["discriminator"]) == 3 and len(losses["adversarial"]) == 2  # the decoder's term from step 2
    assert all(abs(v) < 10 for v in losses["discriminator"] + losses["adversarial"])
    assert not any("discriminator" in p.name for p in (tmp_path / "vae" / "pipeline").rglob("*"))  # never saved
    plain = _cfg(tmp_path, output_dir=str(tmp_path / "plain"))
    train_vae(plain, components=build_tiny_components("tiny", seed=0))
    assert "adversarial" not in json.loads((tmp_path / "plain" / "losses.json").read_text())


def test_adversarial_settings_are_checked(tmp_path):
    with pytest.raises(InputError, match="loss.adversarial must be ≥ 0; got -0.1"):
        _cfg(tmp_path, loss=dict(adversarial=-0.1))
    with pytest.raises(InputError, match=r"discriminator.channels is \[\]"):
        _cfg(tmp_path, discriminator=dict(channels=[]))
    with pytest.raises(InputError, match="discriminator.learning_rate is 0"):
        _cfg(tmp_path, discriminator=dict(learning_rate=0))
