"""The trainable half of the decoupled personalization extractor (DPE): per-kind adapters + Q-Former.

Frozen encoders (tora2/models/encoders.py) turn an entity crop into semantic tokens and identity
tokens; this module turns them into the entity's personalization tokens p_i (l_p × D_e).

Glossary: E entities, Ns semantic tokens, Cs semantic width, Ni object-detail tokens, Co their width,
K identity tokens after the adapter, Q learnable queries (l_p), D entity width (D_e).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


class FeedForwardBlock(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(self.norm(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention of queries onto a context, residual."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(context)
        out, _ = self.attn(self.norm_q(queries), kv, kv, need_weights=False)
        return queries + out


class QFormerLayer(nn.Module):
    """Queries attend to each other, then to the context, then an FFN (BLIP-2's Q-Former layer)."""

    def __init__(self, dim: int, num_heads: int, ffn_mult: int = 4):
        super().__init__()
        self.self_attn = CrossAttentionBlock(dim, num_heads)
        self.cross_attn = CrossAttentionBlock(dim, num_heads)
        self.ffn = FeedForwardBlock(dim, ffn_mult)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        queries = self.self_attn(queries, queries)
        queries = self.cross_attn(queries, context)
        return self.ffn(queries)


class FaceAdapter(nn.Module):
    """One face embedding (E, 1, face_dim) → K identity tokens (E, K, D)."""

    def __init__(self, face_dim: int, dim: int, num_tokens: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.proj = nn.Sequential(nn.Linear(face_dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim * num_tokens))
        self.norm = nn.LayerNorm(dim)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(face.mean(dim=1))  # (E, K·D)
        return self.norm(tokens.view(face.shape[0], self.num_tokens, -1))  # (E, K, D)


class ObjectAdapter(nn.Module):
    """Object-detail tokens (E, Ni, Co) → K identity tokens (E, K, D) by attention pooling."""

    def __init__(self, object_dim: int, dim: int, num_tokens: int, num_heads: int):
        super().__init__()
        self.proj = nn.Linear(object_dim, dim)
        self.queries = nn.Parameter(torch.randn(num_tokens, dim) * dim**-0.5)
        self.pool = CrossAttentionBlock(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        context = self.proj(tokens)  # (E, Ni, D)
        queries = self.queries.expand(tokens.shape[0], -1, -1)  # (E, K, D)
        return self.norm(self.pool(queries, context))  # (E, K, D)


class PersonalizationExtractor(ModelMixin, ConfigMixin):
    """Semantic tokens + kind-specific identity tokens → Q-Former → p_i (E, Q, D).

    The identity branch is chosen per entity: the face adapter for humans whose face embedding is
    present, the object adapter otherwise ("decoupled": low-frequency semantics and high-frequency
    identity come from different encoders and meet only in the Q-Former).
    """

    @register_to_config
    def __init__(
        self,
        semantic_dim: int = 1024,
        face_dim: int = 512,
        object_dim: int = 1024,
        entity_dim: int = 1024,
        num_identity_tokens: int = 4,
        num_queries: int = 16,
        num_layers: int = 2,
        num_heads: int = 8,
        ffn_mult: int = 4,
    ):
        super().__init__()
        self.semantic_proj = nn.Linear(semantic_dim, entity_dim)
        self.face_adapter = FaceAdapter(face_dim, entity_dim, num_identity_tokens)
        self.object_adapter = ObjectAdapter(object_dim, entity_dim, num_identity_tokens, num_heads)
        self.kind_embedding = nn.Embedding(2, entity_dim)  # 0 object, 1 human
        self.queries = nn.Parameter(torch.randn(num_queries, entity_dim) * entity_dim**-0.5)
        self.layers = nn.ModuleList([QFormerLayer(entity_dim, num_heads, ffn_mult) for _ in range(num_layers)])
        self.norm_out = nn.LayerNorm(entity_dim)

    def forward(
        self,
        semantic: torch.Tensor,
        object_tokens: torch.Tensor,
        face: torch.Tensor | None = None,
        is_human: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """semantic (E, Ns, Cs), object_tokens (E, Ni, Co), face (E, 1, face_dim), is_human (E,) bool → (E, Q, D)."""
        if semantic.ndim != 3 or semantic.shape[-1] != self.config.semantic_dim:
            raise ValueError(f"semantic must be (E, Ns, {self.config.semantic_dim}); got {tuple(semantic.shape)}")
        if object_tokens.ndim != 3 or object_tokens.shape[-1] != self.config.object_dim:
            raise ValueError(f"object_tokens must be (E, Ni, {self.config.object_dim}); got {tuple(object_tokens.shape)}")
        num_entities = semantic.shape[0]
        identity = self.object_adapter(object_tokens)  # (E, K, D)
        human = torch.zeros(num_entities, dtype=torch.bool, device=semantic.device)
        if face is not None and is_human is not None:
            if face.shape != (num_entities, 1, self.config.face_dim):
                raise ValueError(f"face must be ({num_entities}, 1, {self.config.face_dim}); got {tuple(face.shape)}")
            human = is_human.to(semantic.device).bool()
            identity = torch.where(human[:, None, None], self.face_adapter(face), identity)  # (E, K, D)
        identity = identity + self.kind_embedding(human.long())[:, None]
        context = torch.cat([self.semantic_proj(semantic), identity], dim=1)  # (E, Ns + K, D)
        queries = self.queries.expand(num_entities, -1, -1)  # (E, Q, D)
        for layer in self.layers:
            queries = layer(queries, context)
        return self.norm_out(queries)  # (E, Q, D)

    def stack_tokens(self, tokens: list) -> dict[str, torch.Tensor]:
        """A list of ``tora2.specs.EntityTokens`` (or None: no reference) → this extractor's inputs (CPU).

        semantic (E, Ns, Cs), object (E, Ni, Co), face (E, 1, face_dim), is_human (E,), valid (E,).
        The one rule for the identity branch: a human's identity tokens are its face embedding when
        their shape is (1, face_dim); any other entity uses them as object detail. Missing rows are zeros.
        """
        face_dim, object_dim, semantic_dim = self.config.face_dim, self.config.object_dim, self.config.semantic_dim
        present = [t for t in tokens if t is not None]
        human = [t is not None and t.kind == "human" and tuple(t.identity.shape) == (1, face_dim) for t in tokens]
        details = [t.identity for t, h in zip(tokens, human) if t is not None and not h]
        detail_shape = tuple(details[0].shape) if details else (1, object_dim)
        semantic_shape = tuple(present[0].semantic.shape) if present else (1, semantic_dim)

        def rows(values, shape):
            out = torch.zeros(len(tokens), *shape)
            for i, value in enumerate(values):
                if value is not None:
                    if tuple(value.shape) != shape:
                        raise ValueError(f"entity token shapes differ: {tuple(value.shape)} vs {shape}; use one encoder for every entity")
                    out[i] = value.detach().float().cpu()
            return out

        return {
            "semantic": rows([None if t is None else t.semantic for t in tokens], semantic_shape),
            "object": rows([t.identity if t is not None and not h else None for t, h in zip(tokens, human)], detail_shape),
            "face": rows([t.identity if h else None for t, h in zip(tokens, human)], (1, face_dim)),
            "is_human": torch.tensor(human, dtype=torch.bool),
            "valid": torch.tensor([t is not None for t in tokens], dtype=torch.bool),
        }

    def encode(self, tokens: list) -> torch.Tensor:
        """A list of ``tora2.specs.EntityTokens`` → p (E, Q, D) (see :meth:`stack_tokens`)."""
        stacks = self.stack_tokens(tokens)
        device, dtype = self.device, self.dtype
        return self(stacks["semantic"].to(device, dtype), stacks["object"].to(device, dtype),
                    stacks["face"].to(device, dtype), stacks["is_human"].to(device))
