"""Real pretrained weights, where they exist on disk (skipped otherwise; run them on a machine with weights).

Paths come from the environment:
  TORA2_CLIP_CHECKPOINT   open_clip ViT-L-14 checkpoint file (e.g. open_clip_pytorch_model.bin)
  TORA2_SAM_CHECKPOINT    sam_vit_b_01ec64.pth
  TORA2_ARCFACE           insightface recognition model (buffalo_l/w600k_r50.onnx)
  TORA2_FACE_DETECTOR     insightface detector (buffalo_l/det_10g.onnx)
"""

import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data

pytestmark = pytest.mark.weights


def weight(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value or not Path(value).expanduser().exists():
        pytest.skip(f"set {variable} to a local weights file to run this test")
    return Path(value).expanduser()


def test_open_clip_vit_l_14_tokens():
    from tora2.models.encoders import SemanticImageEncoder

    encoder = SemanticImageEncoder.from_open_clip("ViT-L-14", weight("TORA2_CLIP_CHECKPOINT"))
    tokens = encoder.encode(encoder.preprocess([skimage.data.chelsea(), skimage.data.coffee()]))
    assert tokens.shape == (2, 257, 768)


def test_sam_vit_b_segments_the_cat():
    from entities.segment import segment_entity

    seg = segment_entity(skimage.data.chelsea(), None, box=(100, 20, 330, 300), sam_checkpoint=weight("TORA2_SAM_CHECKPOINT"))
    assert seg.segmenter == "sam" and 0.2 < seg.mask[20:300, 100:330].mean() < 0.95


def test_arcface_and_insightface_detector_on_the_astronaut():
    from entities.faces import detect_faces, route_kind
    from tora2.models.encoders import FaceIdentityEncoder

    weight("TORA2_FACE_DETECTOR")
    faces, detector = detect_faces(skimage.data.astronaut())
    assert detector == "insightface" and len(faces) >= 1 and faces[0].landmarks.shape == (5, 2)
    kind, face, _ = route_kind(skimage.data.astronaut(), (0, 0, 512, 512), "auto")
    encoder = FaceIdentityEncoder.from_pretrained(weight("TORA2_ARCFACE"))
    embedding = encoder.encode(encoder.preprocess([face, np.ascontiguousarray(face[:, ::-1])]))
    assert kind == "human" and embedding.shape == (2, 1, 512)
    assert float((embedding[0, 0] * embedding[1, 0]).sum()) > 0.5  # a face and its mirror image: same person
