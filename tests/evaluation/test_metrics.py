import numpy as np
import pytest

from tora2.errors import InputError
from tora2.evaluation import binding_correct, crop_square, format_table, summarize, trajectory_error


def test_trajectory_error_is_mean_l1_over_visible_frames():
    requested = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    tracked = np.array([[1.0, 2.0], [10.0, 0.0], [50.0, 50.0]])
    assert trajectory_error(tracked, requested) == pytest.approx((3 + 0 + 80) / 3)
    assert trajectory_error(tracked, requested, visible=np.array([True, True, False])) == pytest.approx(1.5)
    with pytest.raises(InputError, match=r"tracked \(2, 2\) and requested \(3, 2\) paths must both be \(F, 2\)"):
        trajectory_error(tracked[:2], requested)


def test_binding_counts_an_entity_only_when_its_own_request_is_closest():
    a = np.array([[0.0, 0.0], [10.0, 0.0]])
    b = np.array([[0.0, 50.0], [10.0, 50.0]])
    assert binding_correct([a + 1, b - 1], [a, b]) == [True, True]
    assert binding_correct([b, b], [a, b]) == [False, True]  # entity 0 followed entity 1's path
    assert binding_correct([a], [a]) is None


def test_crop_square_pads_outside_with_white():
    frame = np.zeros((10, 10, 3), np.uint8)
    crop = crop_square(frame, (0.0, 0.0), 4)
    assert crop.shape == (4, 4, 3)
    assert crop[0, 0].tolist() == [255, 255, 255] and crop[3, 3].tolist() == [0, 0, 0]
    assert crop_square(frame, (5.0, 5.0), 4).max() == 0


def test_summary_and_table():
    rows = [
        {"case": "1e-000", "num_entities": 1, "traj_error_px": 2.0, "traj_error_pct_width": 1.0, "binding_correct": None,
         "appearance_similarity": 0.9, "appearance_similarity_shuffled": 0.5},
        {"case": "2e-000", "num_entities": 2, "traj_error_px": 4.0, "traj_error_pct_width": 2.0, "binding_correct": True,
         "appearance_similarity": 0.7, "appearance_similarity_shuffled": 0.6, "closest_path_pct_width": 30.0},
        {"case": "2e-000", "num_entities": 2, "traj_error_px": 26.0, "traj_error_pct_width": 13.0, "binding_correct": False,
         "appearance_similarity": None, "appearance_similarity_shuffled": None, "closest_path_pct_width": 8.0},
    ]
    summary = summarize(rows)
    assert list(summary) == ["1", "2", "all"]
    assert summary["2"]["traj_error_px"] == 15.0 and summary["2"]["binding_accuracy"] == 0.5
    assert summary["1"]["binding_accuracy"] is None and summary["all"]["entities"] == 3
    assert summary["all"]["appearance_similarity"] == pytest.approx(0.8)
    # Lost: TrajError above 10 % of the width; near: another path within 15 % (the second 2e entity).
    assert (summary["2"]["lost"], summary["2"]["near"], summary["2"]["lost_near"]) == (1, 1, 1)
    table = format_table(summary).splitlines()
    assert table[2] == "| 1 | 1 | 2.00 | 1.00 | — | 0.900 | 0.500 | 0/1 | — | — |"  # rows scored before the placement check
    assert table[3] == "| 2 | 1 | 15.00 | 7.50 | 0.500 | 0.700 | 0.600 | 1/2 (1/1) | — | — |"
    # The placement check: misplaced below PLACED_MIN; lost by the tracker but drawn on its path in brackets.
    rows[0]["placement_agreement"], rows[1]["placement_agreement"], rows[2]["placement_agreement"] = 0.9, 0.3, 0.8
    summary = summarize(rows)
    assert summary["2"]["placement_agreement"] == pytest.approx(0.55)
    assert (summary["2"]["misplaced"], summary["2"]["lost_placed"]) == (1, 1)
    assert format_table(summary).splitlines()[3].endswith("| 1/2 (1/1) | 0.550 | 1/2 (1) |")


def test_color_histogram_tells_colours_apart_and_ignores_white():
    from tora2.evaluation import ColorHistogram

    red, blue = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    red_on_white = np.full((32, 32, 3), 255, np.uint8)
    red_on_white[8:24, 8:24] = red
    hist = ColorHistogram()
    e = hist.embed([red, blue, red_on_white])
    assert e.shape == (3, 12 * 4 * 4)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0)
    assert e[0] @ e[1] < 0.01  # no colour in common
    assert e[0] @ e[2] > 0.999  # the white margin is not counted


def test_score_video_uses_the_colour_histogram_for_appearance():
    from tora2.evaluation import ColorHistogram, make_cases, score_video
    from tora2.evaluation.runner import shuffled_references

    cases = make_cases(3, 9, 64, 64, split="heldout", seed=0)
    rows = [r for case, others in zip(cases, shuffled_references(cases))
            for r in score_video(case.frames, case, ColorHistogram(), others)]
    own = np.mean([r["appearance_similarity"] for r in rows])
    other = np.mean([r["appearance_similarity_shuffled"] for r in rows])
    assert own > other + 0.3  # ground-truth renders look like their own references (measured 0.61 vs 0.17)


def test_closest_path_is_the_nearest_shared_visible_frame():
    from types import SimpleNamespace

    from tora2.evaluation.runner import closest_path

    def entity(points, visible):
        return SimpleNamespace(points=np.asarray(points, float), visible=np.asarray(visible, bool))

    me = entity([[0, 0], [10, 0], [20, 0]], [True, True, True])
    crossing = entity([[0, 30], [10, 4], [20, 30]], [True, True, True])
    hidden = entity([[0, 1], [10, 1], [20, 1]], [False, False, True])  # 1 px away, but seen only in frame 2
    assert closest_path(me, [crossing]) == pytest.approx(4.0)
    assert closest_path(me, [crossing, hidden]) == pytest.approx(1.0)
    assert closest_path(me, [entity([[0, 0]] * 3, [False] * 3)]) is None and closest_path(me, []) is None
