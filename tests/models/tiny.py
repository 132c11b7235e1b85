"""Tiny model configs built in code, shared by the model tests."""

import torch

from tora2.models.personalization import PersonalizationExtractor
from tora2.models.transformer_tora2 import Tora2Transformer3DModel

COGVIDEOX_KEYS = (
    "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "time_embed_dim", "text_embed_dim",
    "num_layers", "sample_width", "sample_height", "sample_frames", "patch_size", "temporal_compression_ratio",
    "max_text_seq_length", "use_rotary_positional_embeddings",
)


def get_init_dict(**overrides):
    init = dict(
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=4,
        out_channels=4,
        time_embed_dim=32,
        text_embed_dim=24,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
        use_rotary_positional_embeddings=False,
        motion_channels=16,
        motion_norm_groups=32,
        entity_dim=16,
        max_entities=4,
        num_personalization_tokens=3,
        entity_attention_heads=2,
        entity_attention_head_dim=8,
        binder_heads=2,
        motion_frequencies=2,
        contrastive_dim=8,
    )
    init.update(overrides)
    return init


def cogvideox_dict(init):
    return {k: init[k] for k in COGVIDEOX_KEYS}


def make_transformer(seed=0, **overrides):
    torch.manual_seed(seed)
    return Tora2Transformer3DModel(**get_init_dict(**overrides)).eval()


def make_inputs(model, batch=2, frames=3, height=8, width=8, text_length=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    text_length = text_length or cfg.max_text_seq_length  # sincos positions cover exactly this many text tokens
    return dict(
        hidden_states=torch.randn(batch, frames, cfg.in_channels, height, width, generator=g),
        encoder_hidden_states=torch.randn(batch, text_length, cfg.text_embed_dim, generator=g),
        timestep=torch.tensor([10, 500][:batch] + [700] * max(0, batch - 2)),
    )


def make_flow(model, batch=2, frames=3, height=8, width=8, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, model.config.in_channels, height, width, generator=g)


def make_entity_inputs(model, batch=2, entities=2, frames=3, phrase_length=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    return dict(
        entity_positions=torch.rand(batch, entities, frames, 2, generator=g),
        entity_visible=torch.ones(batch, entities, frames, dtype=torch.bool),
        entity_personalization=torch.randn(batch, entities, cfg.num_personalization_tokens, cfg.entity_dim, generator=g),
        entity_text_embeds=torch.randn(batch, entities, phrase_length, cfg.text_embed_dim, generator=g),
        entity_text_mask=torch.ones(batch, entities, phrase_length, dtype=torch.bool),
        entity_mask=torch.ones(batch, entities, dtype=torch.bool),
    )


def perturb(parameters, scale=0.2, seed=4):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in parameters:
            p.add_(torch.randn(p.shape, generator=g) * scale)


def make_personalization(**overrides):
    init = dict(semantic_dim=12, face_dim=10, object_dim=14, entity_dim=16, num_identity_tokens=2,
                num_queries=3, num_layers=2, num_heads=2)
    init.update(overrides)
    torch.manual_seed(0)
    return PersonalizationExtractor(**init).eval()
