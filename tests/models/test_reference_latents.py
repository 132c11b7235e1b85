"""Reference latents (``reference_latent_size``): each entity's reference through the video VAE, read
by a second trajectory-located cross-attention. Identity at init, gradients, the shared meaning of
"no reference", locality, and equivalences with precomputed conditions and save/load."""

import pytest
import torch

from tora2.models.transformer_tora2 import Tora2Transformer3DModel

from .tiny import make_entity_inputs, make_flow, make_inputs, make_transformer, perturb

SIZE = 4  # reference latent side: 2×2 tokens at patch size 2


def reference_transformer(**overrides):
    return make_transformer(entity_locality_sigma=0.15, reference_latent_size=SIZE, **overrides)


def with_references(model, entities, seed=5):
    g = torch.Generator().manual_seed(seed)
    batch, count = entities["entity_mask"].shape
    entities["entity_reference_latents"] = torch.randn(batch, count, model.config.in_channels, SIZE, SIZE, generator=g)
    return entities


def test_config_needs_the_locality_bias_and_a_size_the_patch_divides():
    with pytest.raises(ValueError, match="reference_latent_size needs entity_dim and entity_locality_sigma"):
        make_transformer(reference_latent_size=SIZE)
    with pytest.raises(ValueError, match="multiple of patch_size=2"):
        make_transformer(entity_locality_sigma=0.15, reference_latent_size=3)


def test_identity_at_init_and_every_new_parameter_gets_a_gradient():
    model = reference_transformer()
    inputs, flow = make_inputs(model), make_flow(model)
    entities = with_references(model, make_entity_inputs(model))
    plain = make_transformer(entity_locality_sigma=0.15)
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        assert torch.equal(model(**inputs, video_flow=flow, **entities).sample,
                           plain(**inputs, video_flow=flow, **{k: v for k, v in entities.items() if "reference" not in k}).sample)
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.3)
    model(**inputs, video_flow=flow, **entities).sample.pow(2).mean().backward()
    new = [n for n, _ in model.named_parameters() if "reference" in n]
    assert {"entity_reference.proj.weight", "entity_reference.position", "transformer_blocks.1.reference_attn.null_token"} <= set(new)
    assert all(model.part_of(n) == "tora2" for n in new)
    missing = [n for n, p in model.named_parameters() if "reference" in n and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_no_reference_has_one_meaning_and_references_follow_their_entity():
    """Invalid references (dropped for guidance or in training) give exactly the output of no
    reference latents at all; a reference changes the video only near its own entity's path."""
    model = reference_transformer(num_layers=1, binder="none")
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.3)
    inputs, flow = make_inputs(model), make_flow(model)
    entities = with_references(model, make_entity_inputs(model))
    dropped = dict(entities, entity_personalization_valid=torch.zeros(2, 2, dtype=torch.bool))
    absent = {k: v for k, v in dropped.items() if k != "entity_reference_latents"}
    with torch.no_grad():
        assert torch.equal(model(**inputs, video_flow=flow, **dropped).sample, model(**inputs, video_flow=flow, **absent).sample)
        assert not torch.equal(model(**inputs, video_flow=flow, **entities).sample, model(**inputs, video_flow=flow, **absent).sample)

    one = with_references(model, make_entity_inputs(model, entities=1))
    one["entity_positions"][:] = torch.tensor([0.125, 0.125])  # the top-left token of a 4×4 grid, every frame
    captured = {}
    model.transformer_blocks[0].reference_attn.register_forward_hook(lambda m, a, out: captured.__setitem__("out", out))
    with torch.no_grad():
        model(**inputs, video_flow=flow, **one)
        base = captured["out"].clone()  # (B, N, D)
        one["entity_reference_latents"] += 1.0
        model(**inputs, video_flow=flow, **one)
    change = (captured["out"] - base).abs().amax(dim=-1).view(2, 3, 4, 4)  # (B, F, h, w)
    assert change[:, :, 0, 0].min() > 1e-3
    assert change[:, :, 3, 3].max() < 1e-4 * change[:, :, 0, 0].min()


def test_wrong_reference_shape_is_refused():
    model = reference_transformer()
    entities = make_entity_inputs(model)
    entities["entity_reference_latents"] = torch.zeros(2, 2, model.config.in_channels, SIZE + 2, SIZE + 2)
    with pytest.raises(ValueError, match=r"entity_reference_latents must be \(2, 2, 4, 4, 4\)"):
        model.prepare_conditions(make_flow(model), **entities)


def test_precomputed_conditions_checkpointing_and_save_load_agree(tmp_path):
    model = reference_transformer().train()
    perturb([p for n, p in model.named_parameters() if model.part_of(n) != "cogvideox"], scale=0.2)
    inputs, flow = make_inputs(model), make_flow(model)
    entities = with_references(model, make_entity_inputs(model))
    with torch.no_grad():
        direct = model(**inputs, video_flow=flow, **entities).sample
        conditions = model.prepare_conditions(flow, **entities)
        assert conditions.reference_tokens.shape == (2, 2 * 4, 16)  # (B, E·R, De), R = (4/2)²
        assert conditions.reference_bias.shape == (2, 3 * 4 * 4, 2 * 4)
        assert (direct - model(**inputs, conditions=conditions).sample).abs().max() <= 1e-6
    model.enable_gradient_checkpointing()
    assert (direct - model(**inputs, video_flow=flow, **entities).sample).abs().max() <= 1e-6
    model.save_pretrained(tmp_path / "transformer")
    loaded = Tora2Transformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    assert loaded.config.reference_latent_size == SIZE
    with torch.no_grad():
        assert torch.equal(model.eval()(**inputs, video_flow=flow, **entities).sample,
                           loaded(**inputs, video_flow=flow, **entities).sample)
