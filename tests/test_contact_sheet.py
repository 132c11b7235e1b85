"""scripts/contact_sheet.py: the two-row sheet `make demo` writes, and its one-line errors."""

import importlib.util
import json
from pathlib import Path

import numpy as np

from tora2.trajectory.preview import SHEET_GAP

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("contact_sheet", ROOT / "scripts" / "contact_sheet.py")
contact_sheet = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contact_sheet)


def test_sheet_has_every_frame_twice_with_the_paths_on_the_second_row():
    frames = np.full((3, 16, 16, 3), 40, np.uint8)
    entities = [{"points": [[2, 2], [8, 8], [13, 13]], "visible": [True, True, True]}]
    sheet = np.asarray(contact_sheet.contact_sheet(frames, entities, scale=2))
    assert sheet.shape == (2 * 32 + SHEET_GAP, 3 * 32 + 2 * SHEET_GAP, 3)
    top, bottom = sheet[:32, :32], sheet[32 + SHEET_GAP:, :32]
    assert (top == 40).all()  # as generated
    assert (bottom != 40).any(-1).sum() > 10  # the path and the ring drawn over it


def test_main_writes_png_and_refuses_missing_sidecar(tmp_path, capsys):
    import imageio.v3 as iio

    video = tmp_path / "out.mp4"
    iio.imwrite(video, np.zeros((3, 16, 16, 3), np.uint8), fps=8)
    assert contact_sheet.main([str(video), "-o", str(tmp_path / "sheet.png")]) == 2
    assert "out.mp4.json does not exist" in capsys.readouterr().err
    (tmp_path / "out.mp4.json").write_text(json.dumps({"entities": [{"points": [[1, 1], [5, 5], [9, 9]]}]}))
    assert contact_sheet.main([str(video), "-o", str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").is_file()
    assert contact_sheet.main([str(video), "-o", str(tmp_path / "sheet.jpg")]) == 2
