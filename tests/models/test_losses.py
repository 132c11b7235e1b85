import pytest
import math

import torch
import torch.nn.functional as F

from tora2.training.losses import motion_appearance_contrastive_loss, diffusion_loss

SCALE = torch.tensor(math.log(1 / 0.07))


def embeddings(n=6, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    return z


def test_aligned_pairs_give_a_low_loss_and_permuted_pairs_a_higher_one():
    z = embeddings()
    aligned = motion_appearance_contrastive_loss(z, z, SCALE).item()
    permuted = motion_appearance_contrastive_loss(z, z[torch.tensor([1, 2, 3, 4, 5, 0])], SCALE).item()
    assert aligned < 0.5
    assert permuted > aligned + 3.0


def test_negatives_come_from_the_whole_batch_and_padding_is_ignored():
    z = embeddings(6).view(3, 2, 8)  # 3 samples × 2 entities
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    full = motion_appearance_contrastive_loss(z, z, SCALE, valid)
    kept = z[valid]
    assert torch.allclose(full, motion_appearance_contrastive_loss(kept, kept, SCALE))
    # corrupting a padding entity changes nothing
    z2 = z.clone()
    z2[1, 1] = -z2[1, 1]
    assert torch.allclose(full, motion_appearance_contrastive_loss(z, z2, SCALE, valid))


def test_a_batch_of_single_entity_samples_still_contributes():
    z = embeddings(4).view(4, 1, 8)
    loss = motion_appearance_contrastive_loss(z, z.flip(0), SCALE)
    assert loss.item() > 1.0
    one = motion_appearance_contrastive_loss(z[:1], z[:1], SCALE)
    assert one.item() == 0.0


def test_symmetric():
    a, b = embeddings(5, seed=1), embeddings(5, seed=2)
    assert torch.allclose(motion_appearance_contrastive_loss(a, b, SCALE), motion_appearance_contrastive_loss(b, a, SCALE))


def test_diffusion_loss_is_zero_for_the_true_velocity():
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 8, 8, generator=g)
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
    t = torch.tensor([10, 900])
    a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    velocity = a.sqrt() * noise - (1 - a).sqrt() * latents
    assert diffusion_loss(velocity, noisy, latents, t, alphas_cumprod).item() < 1e-8
    assert diffusion_loss(torch.zeros_like(velocity), noisy, latents, t, alphas_cumprod).item() > 0.1


def test_x_prediction_loss_is_the_velocity_error_of_the_implied_v_with_a_capped_weight():
    g = torch.Generator().manual_seed(0)
    latents, noise, guess = (torch.randn(2, 3, 4, 8, 8, generator=g) for _ in range(3))
    alphas_cumprod = torch.linspace(0.9999, 0.01, 1000)
    t = torch.tensor([400, 900])
    a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    assert diffusion_loss(latents, noisy, latents, t, alphas_cumprod, prediction_type="sample").item() < 1e-10
    implied_v = (a.sqrt() * noisy - guess) / (1 - a).sqrt()  # the v whose x̂0 is `guess`
    assert torch.allclose(diffusion_loss(guess, noisy, latents, t, alphas_cumprod, prediction_type="sample"),
                          diffusion_loss(implied_v, noisy, latents, t, alphas_cumprod), rtol=1e-4)
    t0 = torch.tensor([0, 0])  # σ² = 1e-4: the weight is capped at 1 / 0.05²
    capped = diffusion_loss(guess, noisy, latents, t0, alphas_cumprod, prediction_type="sample")
    assert torch.allclose(capped, 400 * (guess - latents).pow(2).mean(), rtol=1e-5)
    lower = diffusion_loss(guess, noisy, latents, t0, alphas_cumprod, prediction_type="sample", min_sigma=0.5)
    assert torch.allclose(lower, 4 * (guess - latents).pow(2).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="prediction_type 'epsilon' is not trained here"):
        diffusion_loss(guess, noisy, latents, t, alphas_cumprod, prediction_type="epsilon")


def test_entity_loss_weights_peak_at_visible_entities_only():
    from tora2.training.losses import entity_loss_weights

    positions = torch.tensor([[[[0.125, 0.125], [0.875, 0.875]], [[0.5, 0.5], [0.5, 0.5]]]])  # (B=1, E=2, F=2, 2)
    visible = torch.tensor([[[True, True], [True, False]]])
    w = entity_loss_weights(positions, visible, (2, 4, 4), extra=4.0, sigma=0.1)
    assert w.shape == (1, 2, 1, 4, 4)
    assert w.min() >= 1.0 and w.max() <= 5.0
    assert w[0, 0, 0, 0, 0] > 4.0 and w[0, 1, 0, 3, 3] > 4.0  # on entity 0 in frames 0 and 1
    assert w[0, 1, 0, 1:3, 1:3].max() < 1.01  # entity 1 is hidden in frame 1: no weight at its centre
    assert torch.equal(entity_loss_weights(positions[:, :0], visible[:, :0], (2, 4, 4), 4.0, 0.1), torch.ones(1, 2, 1, 4, 4))


def test_diffusion_loss_with_unit_weight_equals_without():
    from tora2.training.losses import diffusion_loss

    g = torch.Generator().manual_seed(0)
    out, noisy, clean = (torch.randn(2, 3, 4, 4, 4, generator=g) for _ in range(3))
    alphas = torch.linspace(0.99, 0.01, 1000)
    t = torch.tensor([10, 900])
    plain = diffusion_loss(out, noisy, clean, t, alphas)
    assert torch.equal(plain, diffusion_loss(out, noisy, clean, t, alphas, torch.ones(2, 3, 1, 4, 4)))
    assert torch.allclose(2 * plain, diffusion_loss(out, noisy, clean, t, alphas, torch.full((2, 3, 1, 4, 4), 2.0)))
