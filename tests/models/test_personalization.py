import pytest
import torch

from tora2.models.personalization import PersonalizationExtractor
from tora2.specs import EntityTokens

from .tiny import make_personalization


def tokens(kind="object", seed=0, face=False):
    g = torch.Generator().manual_seed(seed)
    identity = torch.randn(1, 10, generator=g) if face else torch.randn(5, 14, generator=g)
    return EntityTokens(semantic=torch.randn(7, 12, generator=g), identity=identity, kind=kind)


def test_shapes_and_determinism():
    model = make_personalization()
    batch = [tokens(seed=0), tokens("human", seed=1, face=True), tokens(seed=2)]
    with torch.no_grad():
        a, b = model.encode(batch), model.encode(batch)
    assert a.shape == (3, 3, 16)
    assert torch.equal(a, b)


def test_face_and_object_routes_differ_and_entities_are_independent():
    model = make_personalization()
    with torch.no_grad():
        alone = model.encode([tokens("human", seed=1, face=True)])
        mixed = model.encode([tokens(seed=0), tokens("human", seed=1, face=True)])
        as_object = model.encode([EntityTokens(tokens(seed=1).semantic, tokens(seed=0).identity, "object")])
    assert torch.allclose(alone[0], mixed[1], atol=1e-6)
    assert not torch.allclose(alone, as_object)


def test_save_load_round_trip(tmp_path):
    model = make_personalization()
    model.save_pretrained(tmp_path)
    loaded = PersonalizationExtractor.from_pretrained(tmp_path).eval()
    batch = [tokens(seed=3), tokens("human", seed=4, face=True)]
    with torch.no_grad():
        assert torch.equal(model.encode(batch), loaded.encode(batch))


def test_bad_widths_name_the_expected_shape():
    model = make_personalization()
    with pytest.raises(ValueError, match=r"semantic must be \(E, Ns, 12\)"):
        model(torch.zeros(2, 7, 11), torch.zeros(2, 5, 14))
    with pytest.raises(ValueError, match=r"object_tokens must be \(E, Ni, 14\)"):
        model(torch.zeros(2, 7, 12), torch.zeros(2, 5, 13))
