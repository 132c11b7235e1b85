"""Tora2Transformer3DModel: equivalences with diffusers CogVideoX and Tora, identity at init,
gradients, checkpointing, save/load and shape errors."""

import pytest
import torch
import torch.nn.functional as F
from diffusers import CogVideoXTransformer3DModel
from einops import rearrange

from tora2.models.transformer_tora2 import Tora2Transformer3DModel
from tora2.training.losses import motion_appearance_contrastive_loss

from .tiny import cogvideox_dict, get_init_dict, make_entity_inputs, make_flow, make_inputs, make_transformer, perturb


def rotary_emb(frames, h, w, head_dim):
    """Any (cos, sin) pair of shape (N, head_dim) exercises the rotary path identically in both models."""
    g = torch.Generator().manual_seed(7)
    angles = torch.rand(frames * h * w, head_dim // 2, generator=g).repeat_interleave(2, dim=1) * 3
    return angles.cos(), angles.sin()


@pytest.mark.parametrize("rotary", [False, True])
def test_equals_diffusers_cogvideox_without_flow_or_entities(rotary):
    init = get_init_dict(use_rotary_positional_embeddings=rotary)
    torch.manual_seed(0)
    reference = CogVideoXTransformer3DModel(**cogvideox_dict(init)).eval()
    model = Tora2Transformer3DModel(**init).eval()
    left_at_init = model.load_tora_state_dict(reference.state_dict())
    assert left_at_init and all(model.part_of(k) in ("tora", "tora2") for k in left_at_init)
    perturb(model.tora2_parameters())  # entity modules are unused without entity inputs
    inputs = make_inputs(model)
    if rotary:
        inputs["image_rotary_emb"] = rotary_emb(3, 4, 4, 32)
    with torch.no_grad():
        expected = reference(**inputs).sample
        actual = model(**inputs).sample
    assert actual.shape == (2, 3, 4, 8, 8)
    assert (actual - expected).abs().max().item() <= 1e-5


def tora_reference(model, hidden_states, encoder_hidden_states, timestep, video_flow):
    """Tora's computation written out: MGF on the normed video tokens before attention,
    h + GroupNorm(h)·γ + β, with γ/β = temporal conv (replicate pad) ∘ spatial conv of the motion map."""
    batch, frames, _, height, width = hidden_states.shape
    features = model.traj_extractor(video_flow)
    emb = model.time_embedding(model.time_proj(timestep).to(hidden_states.dtype))
    tokens = model.patch_embed(encoder_hidden_states, hidden_states)
    text_length = encoder_hidden_states.shape[1]
    enc, hid = tokens[:, :text_length], tokens[:, text_length:]
    h, w = height // 2, width // 2

    def modulation(spatial, temporal, feature):
        x = F.conv2d(feature, spatial.weight, spatial.bias, padding=1)
        x = rearrange(x, "(b f) c h w -> (b h w) c f", f=frames)
        x = F.conv1d(F.pad(x, (1, 1), mode="replicate"), temporal.weight, temporal.bias)
        return rearrange(x, "(b h w) c f -> (b f) c h w", h=h, w=w)

    for block, fuser, feature in zip(model.transformer_blocks, model.fuser, features):
        norm_hid, norm_enc, gate_msa, enc_gate_msa = block.norm1(hid, enc, emb)
        x = rearrange(norm_hid, "b (f h w) d -> (b f) d h w", f=frames, h=h)
        gamma = modulation(fuser.flow_gamma_spatial, fuser.flow_gamma_temporal, feature)
        beta = modulation(fuser.flow_beta_spatial, fuser.flow_beta_temporal, feature)
        norm = fuser.flow_cond_norm
        x = x + F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps) * gamma + beta
        norm_hid = rearrange(x, "(b f) d h w -> b (f h w) d", f=frames)
        attn_hid, attn_enc = block.attn1(hidden_states=norm_hid, encoder_hidden_states=norm_enc)
        hid = hid + gate_msa * attn_hid
        enc = enc + enc_gate_msa * attn_enc
        norm_hid, norm_enc, gate_ff, enc_gate_ff = block.norm2(hid, enc, emb)
        ff = block.ff(torch.cat([norm_enc, norm_hid], dim=1))
        hid = hid + gate_ff * ff[:, text_length:]
        enc = enc + enc_gate_ff * ff[:, :text_length]
    out = model.proj_out(model.norm_out(model.norm_final(hid), temb=emb))
    out = out.reshape(batch, frames, h, w, -1, 2, 2).permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
    return out


@pytest.mark.parametrize("perturb_temporal", [False, True])
def test_equals_tora_computation_with_flow(perturb_temporal):
    model = make_transformer()
    tora_only = {k: v for k, v in model.state_dict().items() if model.part_of(k) != "tora2"}
    fresh = make_transformer(seed=9)
    assert fresh.load_tora_state_dict(tora_only) == [k for k in fresh.state_dict() if fresh.part_of(k) == "tora2"]
    if perturb_temporal:  # the zero-init temporal convs, as after Tora training
        perturb([p for n, p in fresh.named_parameters() if "_temporal" in n], scale=0.05)
    inputs = make_inputs(fresh)
    flow = make_flow(fresh)
    with torch.no_grad():
        actual = fresh(**inputs, video_flow=flow).sample
        expected = tora_reference(fresh, **inputs, video_flow=flow)
        plain = fresh(**inputs).sample
    assert (actual - expected).abs().max().item() <= 1e-5
    assert ((actual - plain).abs().max().item() > 1e-3) == perturb_temporal  # zero temporal convs: MGF is identity


def test_tora2_additions_are_identity_at_init():
    model = make_transformer()
    perturb([p for n, p in model.named_parameters() if "_temporal" in n], scale=0.05)
    inputs, flow = make_inputs(model), make_flow(model)
    with torch.no_grad():
        without = model(**inputs, video_flow=flow).sample
        with_entities = model(**inputs, video_flow=flow, **make_entity_inputs(model)).sample
    assert torch.equal(without, with_entities)


def test_entities_change_output_and_every_tora2_parameter_gets_a_gradient():
    model = make_transformer()
    perturb([p for n, p in model.named_parameters() if model.part_of(n) == "tora2" or "_temporal" in n], scale=0.3)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    entities["entity_visible"][0, 1, 2] = False  # one absent frame: its learned "absent" token is used
    with torch.no_grad():
        without = model(**inputs, video_flow=flow).sample
    out = model(**inputs, video_flow=flow, return_contrastive=True, **entities)
    assert (out.sample - without).abs().max().item() > 1e-3
    assert out.z_p.shape == (2, 2, 8) and out.z_m.shape == (2, 2, 8)
    loss = out.sample.pow(2).mean() + motion_appearance_contrastive_loss(out.z_p, out.z_m, model.contrastive.logit_scale)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if model.part_of(n) == "tora2" and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_other_entities_output_depends_on_each_entity():
    """Changing one entity's reference changes the output (the binding routes it into the video)."""
    model = make_transformer()
    perturb(model.tora2_parameters(), scale=0.3)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    with torch.no_grad():
        base = model(**inputs, video_flow=flow, **entities).sample
        entities["entity_personalization"][:, 1] += 1.0
        changed = model(**inputs, video_flow=flow, **entities).sample
    assert (base - changed).abs().max().item() > 1e-4


@pytest.mark.parametrize("binder", ["gated_attention", "linear", "none"])
@pytest.mark.parametrize("block_order", ["motion_first", "personalization_first"])
def test_ablation_variants_run_and_start_as_identity(binder, block_order):
    model = make_transformer(binder=binder, block_order=block_order)
    inputs, flow = make_inputs(model), make_flow(model)
    with torch.no_grad():
        a = model(**inputs, video_flow=flow).sample
        b = model(**inputs, video_flow=flow, **make_entity_inputs(model)).sample
    assert torch.equal(a, b)
    assert (model.entity_binder is None) == (binder == "none")


def test_gradient_checkpointing_gives_the_same_gradients():
    def grads(checkpointing):
        model = make_transformer().train()
        perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.2)
        if checkpointing:
            model.enable_gradient_checkpointing()
        out = model(**make_inputs(model), video_flow=make_flow(model), **make_entity_inputs(model)).sample
        out.pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 100
    worst = max((plain[n] - checkpointed[n]).abs().max().item() for n in plain)
    assert worst <= 1e-6


def test_precomputed_conditions_equal_on_the_fly():
    model = make_transformer()
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.2)
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    with torch.no_grad():
        direct = model(**inputs, video_flow=flow, **entities).sample
        conditions = model.prepare_conditions(flow, precompute_modulation=True, **entities)
        cached = model(**inputs, conditions=conditions).sample
    assert len(conditions.motion_modulation) == 2
    assert conditions.entity_tokens.shape == (2, 2 * (3 + 3), 16)
    assert (direct - cached).abs().max().item() <= 1e-6


@pytest.mark.parametrize("locality", [None, 0.15], ids=["plain", "trajectory-located"])
def test_padding_entities_and_absent_frames_do_not_matter(locality):
    model = make_transformer(entity_locality_sigma=locality)
    perturb(model.tora2_parameters(), scale=0.3)
    inputs, flow = make_inputs(model), make_flow(model)
    one = make_entity_inputs(model, entities=1)
    two = make_entity_inputs(model, entities=2)
    for key in one:  # entity 0 identical, entity 1 is padding
        two[key][:, :1] = one[key]
    two["entity_mask"][:, 1] = False
    with torch.no_grad():
        a = model(**inputs, video_flow=flow, **one).sample
        b = model(**inputs, video_flow=flow, **two).sample
    assert (a - b).abs().max().item() <= 1e-5


def test_save_and_load_round_trip(tmp_path):
    model = make_transformer()
    perturb(model.tora2_parameters())
    model.save_pretrained(tmp_path / "transformer")
    loaded = Tora2Transformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    inputs, flow, entities = make_inputs(model), make_flow(model), make_entity_inputs(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs, video_flow=flow, **entities).sample,
                           loaded(**inputs, video_flow=flow, **entities).sample)
    assert loaded.config.entity_dim == 16


def test_bad_shapes_name_the_expected_shape():
    model = make_transformer()
    inputs = make_inputs(model)
    with pytest.raises(ValueError, match=r"hidden_states must be \(B, F, 4, H, W\)"):
        model(**{**inputs, "hidden_states": inputs["hidden_states"][:, :, :3]})
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be \(B, L, 24\)"):
        model(**{**inputs, "encoder_hidden_states": torch.zeros(2, 8, 7)})
    with pytest.raises(ValueError, match=r"video_flow must be \(B, F, 4, H, W\)"):
        model(**inputs, video_flow=torch.zeros(2, 3, 2, 8, 8))
    entities = make_entity_inputs(model)
    entities["entity_personalization"] = torch.zeros(2, 2, 5, 16)
    with pytest.raises(ValueError, match=r"entity_personalization must be \(2, 2, 3, 16\)"):
        model(**inputs, video_flow=make_flow(model), **entities)
    with pytest.raises(ValueError, match="at most max_entities=4"):
        model(**inputs, video_flow=make_flow(model), **make_entity_inputs(model, entities=5))
    with pytest.raises(ValueError, match="entity inputs need video_flow"):
        model(**inputs, **make_entity_inputs(model))


def test_without_tora_or_tora2_parts_the_modules_are_none():
    model = Tora2Transformer3DModel(**get_init_dict(motion_channels=None, entity_dim=None))
    assert model.traj_extractor is None and model.fuser is None and model.entity_binder is None
    assert all(block.entity_attn is None for block in model.transformer_blocks)
    with pytest.raises(ValueError, match="entity_dim needs motion_channels"):
        Tora2Transformer3DModel(**get_init_dict(motion_channels=None))


def test_a_batch_1_video_flow_is_shared_by_the_whole_batch():
    model = make_transformer()
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.2)
    inputs, entities = make_inputs(model), make_entity_inputs(model)
    flow = make_flow(model, batch=1)
    with torch.no_grad():
        repeated = model(**inputs, video_flow=flow.repeat(2, 1, 1, 1, 1), **entities).sample
        shared = model(**inputs, video_flow=flow, **entities).sample
        conditions = model.prepare_conditions(flow, precompute_modulation=True, **entities)
        cached = model(**inputs, conditions=conditions).sample
    assert conditions.motion_modulation[0][0].shape == (3, 64, 4, 4)
    assert (repeated - shared).abs().max().item() <= 1e-5
    assert (repeated - cached).abs().max().item() <= 1e-5
