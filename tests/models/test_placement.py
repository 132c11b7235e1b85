"""Placement latents (``entity_placement_channels``): every entity's reference pasted at its path
point, through the VAE, patch-embedded by a zero-initialised layer and added to the video tokens.
Identity at init, locality of its effect, refusals, and equivalence with precomputed conditions and
save/load."""

import pytest
import torch

from tora2.models.transformer_tora2 import Tora2Transformer3DModel

from .tiny import make_entity_inputs, make_flow, make_inputs, make_transformer, perturb

CHANNELS = 5  # the tiny model's 4 latent channels + coverage


def placement(batch=2, frames=3, height=8, width=8, seed=7):
    return torch.randn(batch, frames, CHANNELS, height, width, generator=torch.Generator().manual_seed(seed))


def test_identity_at_init_and_the_new_layer_learns():
    model = make_transformer(entity_placement_channels=CHANNELS)
    plain = make_transformer()
    plain.load_state_dict(model.state_dict(), strict=False)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs, video_flow=flow, **entities, entity_placement=placement()).sample,
                           plain(**inputs, video_flow=flow, **entities).sample)
    model(**inputs, video_flow=flow, **entities, entity_placement=placement()).sample.pow(2).mean().backward()
    assert model.entity_placement.weight.grad.abs().sum() > 0
    assert model.part_of("entity_placement.weight") == "tora2"  # absent from converted Tora checkpoints


def test_a_placement_changes_the_video_where_it_is_placed():
    """The layer is a per-patch embedding: a change in one latent patch moves only that patch's token."""
    model = make_transformer(entity_placement_channels=CHANNELS)
    perturb([model.entity_placement.weight], scale=0.3)
    base = placement()
    conditions = model.prepare_conditions(make_flow(model), entity_placement=base)
    changed = base.clone()
    changed[:, 1, :, 0:2, 0:2] += 1.0  # frame 1, the top-left 2×2 latent patch = token (1, 0, 0)
    moved = model.prepare_conditions(make_flow(model), entity_placement=changed).placement_tokens - conditions.placement_tokens
    moved = moved.abs().amax(-1).view(2, 3, 4, 4)  # (B, F, h, w)
    assert moved[:, 1, 0, 0].min() > 0
    moved[:, 1, 0, 0] = 0
    assert moved.abs().max() == 0


def test_placement_is_refused_where_it_cannot_be_read():
    with pytest.raises(ValueError, match="no entity_placement_channels"):
        make_transformer().prepare_conditions(make_flow(make_transformer()), entity_placement=placement())
    model = make_transformer(entity_placement_channels=CHANNELS)
    with pytest.raises(ValueError, match=r"entity_placement must be \(B, F, 5, H, W\)"):
        model.prepare_conditions(make_flow(model), entity_placement=placement()[:, :, :4])


def test_precomputed_conditions_shared_placement_and_save_load_agree(tmp_path):
    model = make_transformer(entity_placement_channels=CHANNELS)
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.2)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    shared = placement(batch=1)
    with torch.no_grad():
        direct = model(**inputs, video_flow=flow, **entities, entity_placement=shared.expand(2, -1, -1, -1, -1)).sample
        conditions = model.prepare_conditions(flow, **entities, entity_placement=shared)  # batch 1: broadcast
        assert conditions.placement_tokens.shape == (1, 3 * 4 * 4, model.config.num_attention_heads * model.config.attention_head_dim)
        assert (direct - model(**inputs, conditions=conditions).sample).abs().max() <= 1e-6
    model.save_pretrained(tmp_path / "transformer")
    loaded = Tora2Transformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    assert loaded.config.entity_placement_channels == CHANNELS
    with torch.no_grad():
        assert torch.equal(model(**inputs, video_flow=flow, **entities, entity_placement=shared).sample,
                           loaded(**inputs, video_flow=flow, **entities, entity_placement=shared).sample)


def test_per_entity_canvases_widen_the_layer_and_start_from_a_one_canvas_model():
    """``entity_placement_per_entity``: one canvas of C + 1 channels per entity slot. Loaded from a
    one-canvas model (``adapt_saved_state``), the layer is repeated on every slot, so canvases that
    sum to the composite give the one-canvas model's tokens (the layer is linear; its bias counts once)."""
    one = make_transformer(entity_placement_channels=CHANNELS)
    perturb([one.entity_placement.weight, one.entity_placement.bias], scale=0.3)
    per_entity = make_transformer(entity_placement_channels=CHANNELS, entity_placement_per_entity=True)
    slots = per_entity.config.max_entities
    assert one.placement_canvases == 1 and per_entity.placement_canvases == slots and make_transformer().placement_canvases is None
    assert per_entity.entity_placement.in_channels == slots * CHANNELS
    per_entity.load_state_dict(per_entity.adapt_saved_state(one.state_dict()))
    first, second = placement(seed=1), placement(seed=2)  # (B, F, Cp, H, W) each
    canvases = torch.cat([first, second] + [torch.zeros_like(first)] * (slots - 2), dim=2)  # (B, F, S·Cp, H, W)
    with torch.no_grad():
        torch.testing.assert_close(per_entity.prepare_conditions(make_flow(per_entity), entity_placement=canvases).placement_tokens,
                                   one.prepare_conditions(make_flow(one), entity_placement=first + second).placement_tokens)
    with pytest.raises(ValueError, match=rf"entity_placement must be \(B, F, {slots * CHANNELS}, H, W\)"):
        per_entity.prepare_conditions(make_flow(per_entity), entity_placement=first)
    assert one.adapt_saved_state(per_entity.state_dict()) is not None  # no rule the other way: left as saved


def test_placement_skip_adds_a_per_pixel_linear_map_to_the_output(tmp_path):
    """``entity_placement_skip``: zero at init (the model without it), then exactly a 1×1 linear map of
    the placement latents added to the output, per latent pixel, broadcast from batch 1, saved and loaded."""
    model = make_transformer(entity_placement_channels=CHANNELS, entity_placement_skip=True)
    plain = make_transformer(entity_placement_channels=CHANNELS)
    plain.load_state_dict(model.state_dict(), strict=False)
    perturb([model.entity_placement.weight], scale=0.3)
    plain.entity_placement.weight.data.copy_(model.entity_placement.weight)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    shared = placement(batch=1)
    with torch.no_grad():
        before = plain(**inputs, video_flow=flow, **entities, entity_placement=shared).sample
        assert torch.equal(model(**inputs, video_flow=flow, **entities, entity_placement=shared).sample, before)
    model(**inputs, video_flow=flow, **entities, entity_placement=shared).sample.pow(2).mean().backward()
    assert model.entity_placement_out.weight.grad.abs().sum() > 0
    assert model.part_of("entity_placement_out.weight") == "tora2"
    weight = torch.randn(4, CHANNELS, generator=torch.Generator().manual_seed(1))  # (C out, Cp)
    with torch.no_grad():
        model.entity_placement_out.weight.copy_(weight[:, :, None, None])
        after = model(**inputs, video_flow=flow, **entities, entity_placement=shared).sample  # (B, F, C, H, W)
        expected = torch.einsum("oc,bfchw->bfohw", weight, shared)  # (1, F, C, H, W)
        assert after.shape == (2, 3, 4, 8, 8)
        assert (after - before - expected).abs().max() <= 1e-5
    model.save_pretrained(tmp_path / "transformer")
    loaded = Tora2Transformer3DModel.from_pretrained(tmp_path / "transformer")
    assert loaded.config.entity_placement_skip is True
    with torch.no_grad():
        assert torch.equal(loaded(**inputs, video_flow=flow, **entities, entity_placement=shared).sample, after)
    with pytest.raises(ValueError, match="entity_placement_skip needs entity_placement_channels"):
        make_transformer(entity_placement_skip=True)


def test_output_refiner_starts_as_the_model_without_it_and_mixes_neighbouring_pixels(tmp_path):
    """``output_refiner_channels``: zero residual at init; once trained it reads the output and the noisy
    input across latent pixels (a change in one input pixel moves its neighbours' outputs), per frame."""
    model = make_transformer(output_refiner_channels=8, output_refiner_blocks=1)
    plain = make_transformer()
    plain.load_state_dict(model.state_dict(), strict=False)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs, video_flow=flow, **entities).sample, plain(**inputs, video_flow=flow, **entities).sample)
    model(**inputs, video_flow=flow, **entities).sample.pow(2).mean().backward()
    assert model.output_refiner.conv_out.weight.grad.abs().sum() > 0
    assert model.part_of("output_refiner.conv_out.weight") == "tora2"
    perturb(model.output_refiner.parameters(), scale=0.3)
    with torch.no_grad():
        base = model(**inputs, video_flow=flow, **entities).sample  # (B, F, C, H, W)
        bumped = dict(inputs, hidden_states=inputs["hidden_states"].clone())
        bumped["hidden_states"][:, 1, :, 4, 4] += 1.0
        moved = (model(**bumped, video_flow=flow, **entities).sample - base).abs()
    assert moved[:, 1, :, 4, 5].max() > 0  # a neighbour across the pixel border
    model.save_pretrained(tmp_path / "transformer")
    loaded = Tora2Transformer3DModel.from_pretrained(tmp_path / "transformer")
    with torch.no_grad():
        assert torch.equal(loaded(**inputs, video_flow=flow, **entities).sample, base)
    with pytest.raises(ValueError, match="output_refiner_channels=0 must be ≥ 1"):
        make_transformer(output_refiner_channels=0)
