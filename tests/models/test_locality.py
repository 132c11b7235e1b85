"""The trajectory-located entity attention (``entity_locality_sigma``): the bias itself, identity at
init, gradients, locality of an entity's influence, and the usual equivalences."""

import math

import pytest
import torch

from tora2.models.binding import trajectory_locality_bias
from tora2.models.transformer_tora2 import Tora2Transformer3DModel

from .tiny import make_entity_inputs, make_flow, make_inputs, make_transformer, perturb

SIGMA = 0.15


def local_transformer(**overrides):
    return make_transformer(entity_locality_sigma=SIGMA, **overrides)


def test_bias_is_a_gaussian_in_width_units_with_a_floor_for_hidden_frames():
    positions = torch.tensor([[[[0.25, 0.5], [0.75, 0.25]]]])  # (B=1, E=1, F=2, 2)
    visible = torch.tensor([[[True, False]]])
    bias = trajectory_locality_bias(positions, visible, (2, 4, 8), sigma=0.1, tokens_per_entity=3)
    assert bias.shape == (1, 2 * 4 * 8, 3)
    frame0 = bias[0, :32, 0].view(4, 8)
    # token (row 1, col 1) has centre (0.1875, 0.375): dx = −0.0625, dy = −0.125·(4/8) = −0.0625 (width units)
    expected = -(0.0625**2 + 0.0625**2) / (2 * 0.1**2)
    assert math.isclose(frame0[1, 1].item(), expected, rel_tol=1e-6)
    assert frame0.max() == frame0[1:3, 1:3].max()  # the nearest tokens get the largest bias
    assert torch.all(bias[0, 32:] == -50.0)  # hidden in frame 1: floor everywhere
    assert torch.equal(bias[..., 0], bias[..., 2])  # all of an entity's tokens share its bias


def test_bias_rejects_a_frame_count_that_is_not_the_videos():
    with pytest.raises(ValueError, match="latent frames"):
        trajectory_locality_bias(torch.rand(1, 1, 3, 2), torch.ones(1, 1, 3, dtype=torch.bool), (2, 4, 4), 0.1, 2)


def test_identity_at_init_and_every_parameter_gets_a_gradient():
    model = local_transformer()
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs, video_flow=flow).sample, model(**inputs, video_flow=flow, **entities).sample)
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.3)
    entities["entity_visible"][0, 1, 2] = False  # one hidden frame: the learned "absent" token is used
    model(**inputs, video_flow=flow, **entities).sample.pow(2).mean().backward()
    names = {n for n, _ in model.named_parameters()}
    assert {"transformer_blocks.0.entity_attn.null_token", "transformer_blocks.0.entity_attn.locality_scale"} <= names
    missing = [n for n, p in model.named_parameters() if model.part_of(n) == "tora2" and "contrastive" not in n
               and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_an_entity_reaches_only_the_tokens_near_its_path():
    """One block: the entity attention is the only cross-token step after the MGF, so a token whose
    bias is at the floor for every entity sees no change when an entity's reference changes."""
    model = local_transformer(num_layers=1, binder="none")
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.3)
    inputs, flow = make_inputs(model), make_flow(model)
    entities = make_entity_inputs(model, entities=1)
    entities["entity_positions"][:] = torch.tensor([0.125, 0.125])  # top-left token of a 4×4 grid, all frames
    block = model.transformer_blocks[0]
    captured = {}
    block.entity_attn.register_forward_hook(lambda m, a, out: captured.__setitem__("out", out))
    with torch.no_grad():
        model(**inputs, video_flow=flow, **entities)
        base = captured["out"].clone()  # (B, N, D), N = 3·4·4
        entities["entity_personalization"] += 1.0
        model(**inputs, video_flow=flow, **entities)
        changed = captured["out"]
    change = (changed - base).abs().amax(dim=-1).view(2, 3, 4, 4)  # (B, F, h, w)
    assert change[:, :, 0, 0].min() > 1e-3  # at the entity
    # the far corner: d²/2σ² = 25 → weight e^−25 relative to the null token; float rounding only
    assert change[:, :, 3, 3].max() < 1e-4 * change[:, :, 0, 0].min()


def test_precomputed_conditions_checkpointing_and_save_load_agree(tmp_path):
    model = local_transformer().train()
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.2)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    with torch.no_grad():
        direct = model(**inputs, video_flow=flow, **entities).sample
        conditions = model.prepare_conditions(flow, **entities)
        assert conditions.entity_bias.shape == (2, 3 * 4 * 4, 2 * (3 + 3))
        assert (direct - model(**inputs, conditions=conditions).sample).abs().max() <= 1e-6
    model.enable_gradient_checkpointing()
    checkpointed = model(**inputs, video_flow=flow, **entities).sample
    assert (direct - checkpointed).abs().max() <= 1e-6
    model.save_pretrained(tmp_path / "transformer")
    loaded = Tora2Transformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    assert loaded.config.entity_locality_sigma == SIGMA
    with torch.no_grad():
        assert torch.equal(model.eval()(**inputs, video_flow=flow, **entities).sample,
                           loaded(**inputs, video_flow=flow, **entities).sample)

