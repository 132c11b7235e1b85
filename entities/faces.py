"""Face detection, alignment and kind routing (``human`` when the entity has a face).

Detector: insightface's SCRFD/RetinaFace when its ONNX file is present (``$TORA2_FACE_DETECTOR``,
else ``~/.insightface/models/buffalo_l/det_10g.onnx``); otherwise OpenCV's frontal-face Haar
cascade, which ships inside ``opencv-python-headless<5`` and needs no download.

Alignment: with 5 landmarks (insightface), a similarity transform onto the ArcFace 112×112
template; without (Haar), a centred square crop of the face box resized to 112×112.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tora2.errors import InputError

FACE_SIZE = 112
# ArcFace's 5-point template for 112×112 crops: eyes, nose tip, mouth corners (x, y).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
DEFAULT_INSIGHTFACE_DETECTOR = Path("~/.insightface/models/buffalo_l/det_10g.onnx")
HAAR_MIN_FACE = 24  # pixels; smaller faces carry too little identity to be worth encoding
INSIGHTFACE_MIN_SCORE = 0.5


@dataclass
class FaceDetection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    landmarks: np.ndarray | None  # (5, 2) or None
    score: float

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def insightface_detector_path() -> Path | None:
    path = Path(os.environ.get("TORA2_FACE_DETECTOR", str(DEFAULT_INSIGHTFACE_DETECTOR))).expanduser()
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _insightface_detector(path: str):
    from insightface.model_zoo import get_model

    model = get_model(path, providers=["CPUExecutionProvider"])
    if model is None or getattr(model, "taskname", None) != "detection":
        raise InputError(f"{path} is not an insightface face detector; unset TORA2_FACE_DETECTOR or point it at det_10g.onnx")
    model.prepare(ctx_id=-1, input_size=(640, 640))
    return model


@functools.lru_cache(maxsize=1)
def _haar_cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise InputError(f"OpenCV Haar cascade {path} is missing; install opencv-python-headless<5")
    return cascade


def detect_faces(rgb: np.ndarray) -> tuple[list[FaceDetection], str]:
    """All faces in an (H, W, 3) uint8 image and the detector's name ("insightface" or "haar")."""
    detector_path = insightface_detector_path()
    if detector_path is not None:
        model = _insightface_detector(str(detector_path))
        bboxes, kpss = model.detect(np.ascontiguousarray(rgb[..., ::-1]), input_size=(640, 640))  # BGR in
        faces = []
        for i, (x0, y0, x1, y1, score) in enumerate(bboxes):
            if score >= INSIGHTFACE_MIN_SCORE:
                kps = None if kpss is None else np.asarray(kpss[i], np.float32)
                faces.append(FaceDetection((float(x0), float(y0), float(x1), float(y1)), kps, float(score)))
        return faces, "insightface"
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = _haar_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(HAAR_MIN_FACE, HAAR_MIN_FACE))
    faces = [FaceDetection((float(x), float(y), float(x + w), float(y + h)), None, 1.0) for x, y, w, h in np.reshape(found, (-1, 4))]
    return faces, "haar"


def align_face(rgb: np.ndarray, face: FaceDetection, size: int = FACE_SIZE) -> np.ndarray:
    """The (size, size, 3) uint8 face crop ArcFace expects."""
    if face.landmarks is not None:
        template = ARCFACE_TEMPLATE * (size / FACE_SIZE)
        matrix, _ = cv2.estimateAffinePartial2D(face.landmarks.astype(np.float32), template, method=cv2.LMEDS)
        if matrix is not None:
            return cv2.warpAffine(rgb, matrix, (size, size), borderValue=0)
    x0, y0, x1, y1 = face.box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2
    # Map the square [cx±half, cy±half] onto [0, size); pixels outside the image become black.
    scale = size / (2 * half)
    matrix = np.array([[scale, 0, size / 2 - cx * scale], [0, scale, size / 2 - cy * scale]], np.float32)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_AREA, borderValue=0)


def pick_face(faces: list[FaceDetection], box: tuple[int, int, int, int]) -> FaceDetection | None:
    """The largest face whose centre lies inside the entity box (faces elsewhere belong to others)."""
    x0, y0, x1, y1 = box
    inside = [f for f in faces if x0 <= (f.box[0] + f.box[2]) / 2 < x1 and y0 <= (f.box[1] + f.box[3]) / 2 < y1]
    return max(inside, key=lambda f: f.area) if inside else None


def route_kind(rgb: np.ndarray, box: tuple[int, int, int, int], kind: str = "auto", source: str = "image"):
    """Resolve ``kind`` → ("human" | "object", aligned face or None, detector name).

    ``object`` skips detection. ``auto`` is ``human`` when a face lies in the entity box.
    ``human`` with no face found is an error (identity needs a face).
    """
    if kind not in ("auto", "human", "object"):
        raise InputError(f"kind {kind!r} is not one of auto, human, object")
    if kind == "object":
        return "object", None, "none"
    faces, detector = detect_faces(rgb)
    face = pick_face(faces, box)
    if face is None:
        if kind == "human":
            raise InputError(
                f"{source}: kind is human but the {detector} detector found no face in the entity; "
                "use --kind object or a photo with a visible frontal face"
            )
        return "object", None, detector
    return "human", align_face(rgb, face), detector
