import numpy as np
import pytest
import skimage.data

from entities.faces import ARCFACE_TEMPLATE, FaceDetection, align_face, detect_faces, pick_face, route_kind
from tora2.errors import InputError


@pytest.fixture(autouse=True)
def no_insightface_detector(monkeypatch, tmp_path):
    monkeypatch.setenv("TORA2_FACE_DETECTOR", str(tmp_path / "absent.onnx"))  # force the offline Haar path


def test_haar_finds_the_astronaut_face():
    faces, detector = detect_faces(skimage.data.astronaut())
    assert detector == "haar" and len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert 150 < (x0 + x1) / 2 < 260 and 60 < (y0 + y1) / 2 < 170 and faces[0].landmarks is None


def test_route_kind_auto_human_and_object():
    astronaut = skimage.data.astronaut()
    kind, face, detector = route_kind(astronaut, (0, 0, 512, 512), "auto")
    assert (kind, detector) == ("human", "haar") and face.shape == (112, 112, 3) and face.dtype == np.uint8
    kind, face, detector = route_kind(skimage.data.coffee(), (0, 0, 600, 400), "auto")
    assert (kind, face, detector) == ("object", None, "haar")
    assert route_kind(astronaut, (0, 0, 512, 512), "object") == ("object", None, "none")


def test_face_outside_entity_box_is_ignored():
    kind, face, _ = route_kind(skimage.data.astronaut(), (300, 300, 512, 512), "auto")
    assert kind == "object" and face is None


def test_human_without_face_is_input_error():
    with pytest.raises(InputError, match="kind is human but the haar detector found no face"):
        route_kind(skimage.data.coffee(), (0, 0, 600, 400), "human", source="coffee.png")


def test_align_with_landmarks_maps_onto_arcface_template():
    # Landmarks that sit on the template at 2× scale, offset by (10, 20): alignment must undo exactly
    # that similarity transform. The image is a coordinate ramp (R = x, G = y), so every aligned
    # pixel tells where it was sampled.
    yy, xx = np.mgrid[:300, :300]
    image = np.stack([xx * 0.8, yy * 0.8, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    landmarks = ARCFACE_TEMPLATE * 2 + np.array([10, 20], np.float32)
    aligned = align_face(image, FaceDetection((10, 20, 234, 244), landmarks, 0.9))
    assert aligned.shape == (112, 112, 3)
    for u, v in [(0, 0), (56, 56), (100, 30)]:
        assert abs(int(aligned[v, u, 0]) - int((10 + 2 * u) * 0.8)) <= 2
        assert abs(int(aligned[v, u, 1]) - int((20 + 2 * v) * 0.8)) <= 2


def test_align_without_landmarks_is_centred_square_of_the_box():
    image = np.zeros((200, 200, 3), np.uint8)
    image[50:150, 60:140] = 255  # 80 wide, 100 tall white box
    aligned = align_face(image, FaceDetection((60, 50, 140, 150), None, 1.0))
    # Square side 100 centred on the box: 10 px black margins left/right → 11 px at 112.
    assert aligned.shape == (112, 112, 3)
    assert aligned[56, :10].max() == 0 and aligned[56, -10:].max() == 0 and aligned[56, 20:90].min() == 255


def test_pick_face_takes_the_largest_inside():
    small = FaceDetection((0, 0, 10, 10), None, 1.0)
    large = FaceDetection((20, 20, 60, 60), None, 1.0)
    outside = FaceDetection((200, 200, 400, 400), None, 1.0)
    assert pick_face([small, large, outside], (0, 0, 100, 100)) is large
    assert pick_face([outside], (0, 0, 100, 100)) is None


def test_insightface_detector_path_rejects_non_detector(monkeypatch, tiny_arcface):
    from entities import faces

    faces._insightface_detector.cache_clear()
    monkeypatch.setenv("TORA2_FACE_DETECTOR", str(tiny_arcface))
    with pytest.raises(InputError, match="is not an insightface face detector"):
        detect_faces(skimage.data.astronaut())
    faces._insightface_detector.cache_clear()
