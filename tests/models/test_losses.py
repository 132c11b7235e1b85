import math

import torch
import torch.nn.functional as F

from tora2.training.losses import motion_appearance_contrastive_loss, v_prediction_loss

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


def test_v_prediction_loss_is_zero_for_the_true_velocity():
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 8, 8, generator=g)
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
    t = torch.tensor([10, 900])
    a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    velocity = a.sqrt() * noise - (1 - a).sqrt() * latents
    assert v_prediction_loss(velocity, noisy, latents, t, alphas_cumprod).item() < 1e-8
    assert v_prediction_loss(torch.zeros_like(velocity), noisy, latents, t, alphas_cumprod).item() > 0.1
