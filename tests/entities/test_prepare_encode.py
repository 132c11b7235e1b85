import json
import warnings

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from entities import EntityCache, PreparedEntity, encode_entity, load_prepared, prepare_entity
from entities.encode import DETAIL_GRID
from entities.segment import EntityWarning
from tora2.errors import InputError
from tora2.models.encoders import FaceIdentityEncoder, SemanticImageEncoder
from tora2.specs import EntitySpec

from .conftest import disc_image


@pytest.fixture(autouse=True)
def no_insightface_detector(monkeypatch, tmp_path):
    monkeypatch.setenv("TORA2_FACE_DETECTOR", str(tmp_path / "absent.onnx"))


def test_prepare_rgba_exact(tmp_path, rgba_square):
    path = tmp_path / "sprite.png"
    Image.fromarray(rgba_square, "RGBA").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EntityWarning)
        entity = prepare_entity(path, "  a green block ")
    assert (entity.text, entity.kind, entity.box) == ("a green block", "object", (30, 5, 50, 15))
    assert entity.crop.size == (20, 20) and entity.face is None
    assert entity.meta == {"source": str(path), "segmenter": "alpha", "detector": "haar", "warnings": []}
    crop = np.asarray(entity.crop)
    assert (crop[5:15, :, 3] == 255).all() and crop[:5, :, 3].sum() == 0
    assert tuple(crop[10, 10]) == (0, 200, 0, 255)


def test_prepare_grabcut_records_warning():
    rgb, mask = disc_image(h=64, w=96, centre=(48, 32), radius=14)
    with pytest.warns(EntityWarning):
        entity = prepare_entity(rgb, "a red ball", box=(25, 10, 72, 55), kind="object")
    assert entity.meta["segmenter"] == "grabcut" and entity.meta["detector"] == "none"
    assert "GrabCut" in entity.meta["warnings"][0]
    assert abs(entity.box[0] - 34) <= 1 and abs(entity.box[2] - 63) <= 1


def test_prepare_sam(tiny_sam_checkpoint):
    rgb, _ = disc_image()
    entity = prepare_entity(rgb, "a ball", box=(20, 10, 60, 50), kind="object", sam_checkpoint=tiny_sam_checkpoint)
    assert entity.meta["segmenter"] == "sam" and entity.meta["warnings"] == []
    assert entity.mask.shape == (64, 96)


def test_prepare_human_from_photo():
    with pytest.warns(EntityWarning):
        entity = prepare_entity(skimage.data.astronaut(), "an astronaut", box=(100, 20, 360, 300))
    assert entity.kind == "human" and entity.face.shape == (112, 112, 3)


def test_prepare_bad_input():
    rgb, _ = disc_image()
    with pytest.raises(InputError, match="outside the 96x64 image"):
        prepare_entity(rgb, "x", box=(0, 0, 200, 10))
    with pytest.raises(InputError, match="either a box or a point"):
        prepare_entity(rgb, "x", box=(0, 0, 10, 10), point=(1, 1))
    with pytest.raises(InputError, match="kind 'person'"):
        prepare_entity(rgb, "x", kind="person")
    with pytest.raises(InputError, match="entity text is empty"):
        prepare_entity(rgb, " ")
    with pytest.warns(EntityWarning, match="GrabCut"), pytest.raises(InputError, match="kind is human"):
        prepare_entity(rgb, "x", box=(20, 10, 60, 50), kind="human")


def test_save_load_round_trip(tmp_path, rgba_square):
    entity = prepare_entity(rgba_square, "a block")
    entity.face = np.full((112, 112, 3), 9, np.uint8)
    entity.save(tmp_path / "e")
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["crop.png", "entity.json", "face.png", "mask.png"]
    record = json.loads((tmp_path / "e" / "entity.json").read_text())
    assert record["box"] == [30, 5, 50, 15] and record["segmenter"] == "alpha" and record["image_size"] == [60, 40]
    loaded = load_prepared(tmp_path / "e")
    assert (loaded.text, loaded.kind, loaded.box, loaded.meta) == (entity.text, entity.kind, entity.box, entity.meta)
    np.testing.assert_array_equal(loaded.mask, entity.mask)
    np.testing.assert_array_equal(np.asarray(loaded.crop), np.asarray(entity.crop))
    np.testing.assert_array_equal(loaded.face, entity.face)
    # Overwriting an entity directory replaces it; nothing temporary is left beside it.
    entity.text = "a second block"
    entity.face = None
    entity.save(tmp_path / "e")
    assert load_prepared(tmp_path / "e").text == "a second block" and not (tmp_path / "e" / "face.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_save_refuses_foreign_directory_and_load_damaged(tmp_path, rgba_square):
    entity = prepare_entity(rgba_square, "a block")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty and not an entity directory"):
        entity.save(tmp_path / "other")
    with pytest.raises(InputError, match="not an entity directory"):
        load_prepared(tmp_path / "other")
    entity.save(tmp_path / "e")
    (tmp_path / "e" / "crop.png").write_bytes(b"broken")
    with pytest.raises(InputError, match="is damaged"):
        load_prepared(tmp_path / "e")


def test_to_spec(rgba_square):
    entity = prepare_entity(rgba_square, "a block")
    trajectory = np.zeros((5, 2), np.float32)
    spec = entity.to_spec(trajectory=trajectory)
    assert isinstance(spec, EntitySpec) and spec.text == "a block" and spec.kind == "object"
    assert spec.image is entity.crop and spec.trajectory is trajectory and spec.visible is None
    assert spec.meta["segmenter"] == "alpha"


# ----- encode ---------------------------------------------------------------------------------
@pytest.fixture
def encoder():
    return SemanticImageEncoder.tiny("open_clip")


def test_encode_object_shapes_and_determinism(encoder, rgba_square):
    entity = prepare_entity(rgba_square, "a block")
    tokens = encode_entity(entity, encoder)
    assert tokens.kind == "object"
    assert tokens.semantic.shape == (17, 16) and tokens.identity.shape == (DETAIL_GRID**2, 16) == (16, 16)
    again = encode_entity(entity.to_spec(), encoder)  # the spec of the same entity: same tokens
    assert torch.equal(again.semantic, tokens.semantic) and torch.equal(again.identity, tokens.identity)
    assert tokens.semantic.shape == encode_entity(entity, encoder, detail_size=96).semantic.shape
    assert encode_entity(entity, encoder, detail_size=96).identity.shape == (16, 16)


def test_encode_dinov2_backend(rgba_square):
    tokens = encode_entity(prepare_entity(rgba_square, "a block"), SemanticImageEncoder.tiny("dinov2"))
    assert tokens.semantic.shape == (17, 16) and tokens.identity.shape == (16, 16)


def test_encode_bad_detail_size(encoder, rgba_square):
    with pytest.raises(InputError, match="detail_size 50 must be a multiple of the semantic encoder's image size 32"):
        encode_entity(prepare_entity(rgba_square, "a block"), encoder, detail_size=50)


def test_encode_human_with_face_encoder(encoder, tiny_arcface):
    face = np.full((112, 112, 3), 120, np.uint8)
    entity = PreparedEntity(
        text="a person", kind="human", crop=Image.new("RGBA", (40, 40), (200, 150, 120, 255)),
        mask=np.ones((40, 40), bool), box=(0, 0, 40, 40), face=face,
    )
    face_encoder = FaceIdentityEncoder.from_pretrained(tiny_arcface)
    tokens = encode_entity(entity, encoder, face_encoder=face_encoder)
    assert tokens.kind == "human" and tokens.identity.shape == (1, 512) and tokens.semantic.shape == (17, 16)
    with pytest.warns(EntityWarning, match="no face encoder"):
        fallback = encode_entity(entity, encoder)
    assert fallback.kind == "object" and fallback.identity.shape == (16, 16)


def test_encode_spec_with_photo_detects_face(encoder, tiny_arcface):
    spec = EntitySpec(text="an astronaut", image=skimage.data.astronaut(), kind="auto")
    tokens = encode_entity(spec, encoder, face_encoder=FaceIdentityEncoder.from_pretrained(tiny_arcface))
    assert tokens.kind == "human" and tokens.identity.shape == (1, 512)


def test_encode_spec_precomputed_and_missing_image(encoder):
    spec = EntitySpec(text="x", tokens="precomputed")
    assert encode_entity(spec, encoder) == "precomputed"
    with pytest.raises(InputError, match="has no image to encode"):
        encode_entity(EntitySpec(text="x"), encoder)


def test_encode_uses_cache(tmp_path, encoder, rgba_square, tiny_arcface):
    entity = prepare_entity(rgba_square, "a block")
    cache = EntityCache(tmp_path / "cache")
    cold = encode_entity(entity, encoder, cache=cache)
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    warm = encode_entity(entity, encoder, cache=cache)
    assert (cache.hits, cache.misses) == (2, 2)
    assert torch.equal(cold.semantic, warm.semantic) and torch.equal(cold.identity, warm.identity)
    encode_entity(entity, SemanticImageEncoder.tiny("open_clip", seed=1), cache=cache)  # new weights: misses
    assert (cache.hits, cache.misses) == (2, 4)
    encode_entity(entity, encoder, detail_size=96, cache=cache)  # new setting: detail misses, semantic hits
    assert (cache.hits, cache.misses) == (3, 5)
