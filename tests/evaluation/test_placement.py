"""The tracker-free placement check (tora2/evaluation/placement.py) and its place in the evaluation."""

import numpy as np

from tora2.evaluation import make_cases, run_evaluation
from tora2.evaluation.placement import backdrop_clip, placement_agreement, sprites_on
from tora2.evaluation.runner import PLACED_MIN
from tora2.synthetic.clips import render_clip


def sprites_on_surface(frames, entities):
    return sprites_on(backdrop_clip(frames, entities), entities)


def test_placement_agreement_passes_a_faint_sprite_on_its_path_and_fails_a_missing_or_moved_one():
    """The filter a faint sprite on its path passes (the tracker's template match may miss it): high
    for the case's sprites drawn at their points even at a third of their contrast, low where one
    entity is missing or drawn elsewhere, while the others keep their scores."""
    case = make_cases(1, 9, 64, 64, split="train", seed=3, entity_counts=(2,))[0]
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
    background = np.stack([90 + 0.5 * xs, 160 - 0.5 * ys, 120 + 0 * xs], axis=-1).astype(np.float32)  # (H, W, 3)
    plain = np.repeat(background[None], 9, axis=0)  # (F, H, W, 3)
    drawn = sprites_on_surface(plain, case.entities).astype(np.float32)
    faint = plain + (drawn - plain) / 3.0  # pale sprites, exactly on their paths
    assert (placement_agreement(faint, case.entities) > 0.95).all()
    first, second = case.entities
    alone = sprites_on_surface(plain, [first]).astype(np.float32)  # the second entity never drawn
    scores = placement_agreement(alone, case.entities)
    assert scores[0] > 0.9 and scores[1] < 0.5, scores
    moved = np.roll(drawn, 12, axis=2)  # everything drawn 12 px to the right of its path
    assert (placement_agreement(moved, case.entities) < 0.6).all()


def test_cases_keep_their_background_and_the_ground_truth_is_placed_exactly():
    """make_cases keeps each case's background (draw_clip: synthesize_clip's draws, before rendering;
    the renders are exactly its sprites on it), so for the ground truth and its round trip the check
    uses the true backdrop."""
    cases = make_cases(2, 9, 64, 64, seed=0)
    assert all((render_clip(c.background, c.entities) == c.frames).all() for c in cases)
    empty = cases[3].backdrop_case()
    assert empty.entities == [] and (empty.frames == cases[3].background).all()
    report = run_evaluation(cases, lambda case: case.frames, backdrop_known=True)
    assert all(r["placement_agreement"] == 1.0 for r in report["rows"])  # photographs and textures included
    assert report["summary"]["all"]["misplaced"] == 0
    # A video of the background alone: every entity missing, none placed.
    blank = run_evaluation(cases, lambda case: np.repeat(case.background[None], len(case.frames), axis=0),
                           backdrop_known=True)
    assert all(r["placement_agreement"] < PLACED_MIN for r in blank["rows"])
    assert blank["summary"]["all"]["misplaced"] == len(blank["rows"])
