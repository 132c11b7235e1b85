"""scripts/reference_colour.py and scripts/presence_by_frame.py: their measurements, and a run on the embedded model."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("reference_colour", ROOT / "scripts" / "reference_colour.py")
reference_colour = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference_colour)


def test_patch_colour_reads_the_patch_on_the_path_in_every_frame():
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    frames[0, 6:15, 6:15] = (200, 0, 0)  # a 9×9 red patch at (10, 10) in frame 0
    frames[1, 16:25, 16:25] = (0, 100, 0)  # a green one at (20, 20) in frame 1
    colour = reference_colour.patch_colour(frames, np.array([[10.0, 10.0], [20.0, 20.0]]))
    assert np.allclose(colour, (100, 50, 0))


def test_script_runs_on_the_embedded_model():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "reference_colour.py"), "--cases", "1", "--steps", "2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("tora2-embedded:") and lines[1].startswith("1e-000")
    assert float(lines[-1].rsplit(":", 1)[1]) > 0


def test_presence_is_the_reference_similarity_of_the_crop_at_the_requested_point():
    spec = importlib.util.spec_from_file_location("presence_by_frame", ROOT / "scripts" / "presence_by_frame.py")
    presence_by_frame = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(presence_by_frame)
    from tora2.evaluation import make_cases
    from tora2.evaluation.metrics import ColorHistogram

    case = make_cases(1, 9, 64, 64, entity_counts=(1,))[0]
    histogram = ColorHistogram()
    own = presence_by_frame.presence(case.frames, case.entities[0], histogram)  # (F,)
    blank = presence_by_frame.presence(np.full_like(case.frames, 255), case.entities[0], histogram)
    assert own.shape == (9,) and own.min() > 0.3  # the sprite is there in every frame of the render
    assert (blank < own).all()


def test_clean_predictions_sheet_on_the_embedded_model(tmp_path):
    """scripts/clean_predictions.py: 4 cases × 3 frames of 64 px rows, the ground truth + 2 timesteps, ×2."""
    from PIL import Image

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "clean_predictions.py"),
                          "-o", str(tmp_path / "sheet.png"), "--timesteps", "900,50", "--no-placement"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sheet.shape == (4 * 3 * 64 * 2, 3 * 64 * 2, 3)
    ground_truth, late = sheet[:, :128].astype(float), sheet[:, -128:].astype(float)
    assert np.abs(late - ground_truth).mean() < np.abs(sheet[:, 128:256].astype(float) - ground_truth).mean()
