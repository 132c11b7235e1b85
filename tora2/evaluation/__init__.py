"""Evaluation: a tracker that reads entity paths back from videos, the metrics (TrajError, binding
accuracy, appearance similarity with a shuffled-reference baseline, and the tracker-free placement
agreement) and the ``tora2 eval`` runner. docs/results.md shows the table and the tracker's own error."""

from tora2.evaluation.metrics import (
    ColorHistogram,
    appearance_embedding_name,
    binding_correct,
    crop_square,
    pretrained_semantic_encoder,
    trajectory_error,
)
from tora2.evaluation.placement import placement_agreement
from tora2.evaluation.runner import (
    EvalCase,
    case_sheet,
    first_cases,
    format_table,
    make_cases,
    pipeline_generator,
    reconstruction_generator,
    run_evaluation,
    score_video,
    summarize,
)
from tora2.evaluation.tracker import TrackResult, track_entity

__all__ = [
    "ColorHistogram",
    "appearance_embedding_name",
    "pretrained_semantic_encoder",
    "EvalCase",
    "TrackResult",
    "binding_correct",
    "case_sheet",
    "first_cases",
    "crop_square",
    "format_table",
    "make_cases",
    "pipeline_generator",
    "placement_agreement",
    "reconstruction_generator",
    "run_evaluation",
    "score_video",
    "summarize",
    "track_entity",
    "trajectory_error",
]
