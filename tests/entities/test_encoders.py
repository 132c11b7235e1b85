import json

import numpy as np
import pytest
import torch

from tora2.errors import InputError
from tora2.models.encoders import FaceIdentityEncoder, SemanticImageEncoder

from .conftest import make_tiny_arcface

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def images(n=2, size=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture
def open_clip_tiny(tmp_path):
    """A tiny custom open_clip architecture registered by config file, and a random checkpoint of it."""
    import open_clip

    name = f"tora2-test-tiny-{tmp_path.name}"
    (tmp_path / f"{name}.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(tmp_path / f"{name}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(name)
    checkpoint = tmp_path / "tiny_clip.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return name, checkpoint, model


@pytest.mark.parametrize("backend", ["open_clip", "dinov2"])
def test_shapes_and_properties(backend):
    encoder = SemanticImageEncoder.tiny(backend)
    x = encoder.preprocess(images(3))
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    tokens = encoder.encode(x)
    assert tokens.shape == (3, 17, 16)
    assert (encoder.out_dim, encoder.image_size, encoder.grid_size, encoder.num_tokens) == (16, 32, 4, 17)
    assert encoder.encoder_id.startswith(f"{backend}:tiny:32:float32:")
    assert not any(p.requires_grad for p in encoder.parameters())


@pytest.mark.parametrize("backend", ["open_clip", "dinov2"])
def test_save_load_round_trip(tmp_path, backend):
    encoder = SemanticImageEncoder.tiny(backend, seed=3)
    encoder.save_pretrained(tmp_path / "enc")
    loaded = SemanticImageEncoder.from_pretrained(tmp_path / "enc")
    x = encoder.preprocess(images())
    assert torch.equal(loaded.encode(x), encoder.encode(x))
    assert loaded.encoder_id == encoder.encoder_id
    assert SemanticImageEncoder.tiny(backend, seed=4).encoder_id != encoder.encoder_id  # weights are in the id


def test_encode_checks_shape():
    encoder = SemanticImageEncoder.tiny()
    with pytest.raises(ValueError, match=r"pixel_values must be \(E, 3, 32, 32\); got \(1, 3, 64, 64\)"):
        encoder.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="uint8 RGB"):
        encoder.preprocess([np.zeros((4, 4), np.uint8)])


def test_open_clip_checkpoint_loads_through_open_clip(open_clip_tiny):
    name, checkpoint, model = open_clip_tiny
    encoder = SemanticImageEncoder.from_open_clip(name, checkpoint)
    x = encoder.preprocess(images())
    tokens = encoder.encode(x)
    assert tokens.shape == (2, 17, 16)
    with torch.no_grad():
        pooled = model.encode_image(x)
    torch.testing.assert_close(tokens[:, 0], pooled)  # token 0 is CLIP's image embedding
    random = SemanticImageEncoder.from_open_clip(name)
    assert not torch.equal(random.encode(x), tokens)


def test_open_clip_mismatched_and_missing_checkpoint(tmp_path, open_clip_tiny):
    import open_clip

    name, checkpoint, _ = open_clip_tiny
    other = f"{name}-wide"
    cfg = json.loads(json.dumps(TINY_OPEN_CLIP))
    cfg["vision_cfg"]["width"] = 48
    (tmp_path / f"{other}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / f"{other}.json")
    with pytest.raises(InputError, match=f"does not match model '{other}'"):
        SemanticImageEncoder.from_open_clip(other, checkpoint)
    with pytest.raises(InputError, match="not found"):
        SemanticImageEncoder.from_open_clip(name, tmp_path / "nope.pt")
    with pytest.raises(InputError, match="unknown open_clip model 'no-such-model'"):
        SemanticImageEncoder.from_open_clip("no-such-model")


def test_dinov2_from_local_transformers_folder(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, patch_size=8, image_size=32)
    model = Dinov2Model(config).eval()
    model.save_pretrained(tmp_path / "dinov2-tiny")
    encoder = SemanticImageEncoder.from_dinov2(tmp_path / "dinov2-tiny", image_size=32)
    x = encoder.preprocess(images())
    with torch.no_grad():
        expected = model(pixel_values=x).last_hidden_state
    torch.testing.assert_close(encoder.encode(x), expected)
    assert encoder.encoder_id.startswith("dinov2:dinov2-tiny:32:float32:")
    with pytest.raises(InputError, match="cannot load DINOv2"):
        SemanticImageEncoder.from_dinov2(tmp_path / "missing")


def test_unknown_backend():
    with pytest.raises(InputError, match="unknown semantic encoder backend 'vit'"):
        SemanticImageEncoder(backend="vit")


# ----- ArcFace ----------------------------------------------------------------------------
def test_face_encoder_through_insightface(tiny_arcface):
    encoder = FaceIdentityEncoder.from_pretrained(tiny_arcface)
    faces = [np.full((112, 112, 3), v, np.uint8) for v in (30, 200)]
    x = encoder.preprocess(faces)
    assert x.shape == (2, 3, 112, 112)
    assert float(x[0, 0, 0, 0]) == pytest.approx((30 - 127.5) / 127.5)
    out = encoder.encode(x)
    assert out.shape == (2, 1, 512) and (encoder.out_dim, encoder.image_size) == (512, 112)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 1))
    assert not torch.allclose(out[0], out[1])
    # The same numbers as insightface's own feature path (which expects BGR input).
    raw = encoder.model.get_feat([faces[1][..., ::-1].copy()])
    torch.testing.assert_close(out[1, 0], torch.nn.functional.normalize(torch.from_numpy(raw[0]).float(), dim=0))


def test_face_encoder_save_load(tmp_path, tiny_arcface):
    encoder = FaceIdentityEncoder.from_pretrained(tiny_arcface)
    encoder.save_pretrained(tmp_path / "face")
    assert sorted(p.name for p in (tmp_path / "face").iterdir()) == ["arcface.onnx", "config.json"]
    loaded = FaceIdentityEncoder.from_pretrained(tmp_path / "face")
    x = encoder.preprocess([np.full((112, 112, 3), 90, np.uint8)])
    assert torch.equal(loaded.encode(x), encoder.encode(x))
    assert loaded.encoder_id == encoder.encoder_id
    make_tiny_arcface(tmp_path / "other.onnx", seed=1)
    assert FaceIdentityEncoder.from_pretrained(tmp_path / "other.onnx").encoder_id != encoder.encoder_id


def test_face_encoder_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        FaceIdentityEncoder.from_pretrained(tmp_path / "w600k_r50.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(InputError, match="cannot load ArcFace model"):
        FaceIdentityEncoder.from_pretrained(tmp_path / "broken.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="exactly one .onnx"):
        FaceIdentityEncoder.from_pretrained(tmp_path / "empty")
