"""The pipeline's own entity encoding and the CLI's (entities.encode_entity) give the same tokens,
so a model sees the same inputs whichever way its references were encoded."""

import numpy as np
import torch

from entities import encode_entity
from tora2.pipelines.pipeline_tora2 import Tora2Pipeline
from tora2.specs import EntitySpec


def test_pipeline_fallback_equals_entities_encode_entity(tiny_components):
    pipe = Tora2Pipeline(**tiny_components)
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 30, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((40, 30)) > 0.3, 255, 0)
    spec = EntitySpec(text="a red apple", image=rgba, kind="object")
    with torch.no_grad():
        (encoded,) = pipe.encode_entity_images([spec])
        reference = encode_entity(spec, pipe.image_encoder)
    assert encoded.tokens.semantic.shape == (17, 32)
    assert encoded.tokens.identity.shape == (16, 32)
    assert torch.equal(encoded.tokens.semantic, reference.semantic)
    assert torch.equal(encoded.tokens.identity, reference.identity)
    assert encoded.tokens.kind == reference.kind == "object"
