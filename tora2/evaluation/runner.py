"""Evaluation cases on held-out sprites and paths, a model (or the ground truth) in the loop, a report.

A case is one synthetic clip (``tora2.synthetic``): its caption is the prompt, its entities'
sprites are the references and their exact paths are the requested tracks. ``generate(case)``
returns the video to score — a pipeline's output, ``case.frames`` itself (the ground-truth render,
which measures the tracker's own error and gives the metrics' ceiling), or the ground truth after
the model's autoencoder round trip (``reconstruction_generator``: the ceiling of any denoiser that
works in that autoencoder's latent space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from tora2.errors import InputError
from tora2.evaluation.metrics import CROP_MARGIN, binding_correct, crop_square, embed, trajectory_error
from tora2.evaluation.placement import placement_agreement
from tora2.evaluation.tracker import track_entity
from tora2.specs import EntitySpec
from tora2.synthetic.clips import SyntheticEntity, draw_clip, make_caption, render_clip
from tora2.synthetic.dataset import clip_rng
from tora2.synthetic.sprites import CLIP_SPLITS, check_split, load_sprites, sprite_on_white

if TYPE_CHECKING:
    from PIL import Image

ENTITY_COUNTS = (1, 2, 3)
LOST_PCT = 10.0  # an entity whose TrajError exceeds this (% of the width, about a sprite's side) is lost
NEAR_PCT = 15.0  # paths that come this close (% of the width) in a frame where both are visible meet
PLACED_MIN = 0.5  # placement agreement at or above which an entity counts as drawn on its path (tora2.evaluation.placement)
CROP_FRAMES = 4  # frames per entity whose crops are embedded (evenly spaced)
CASE_INDEX_BASE = 1_000_000  # case indices live far from dataset clip indices of the same seed


@dataclass
class EvalCase:
    id: str
    prompt: str
    entities: list[SyntheticEntity]
    frames: np.ndarray  # (F, H, W, 3) uint8 ground-truth render
    background: np.ndarray | None = None  # (H, W, 3) uint8: the render's background without its sprites

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    def entity_specs(self) -> list[EntitySpec]:
        """What a pipeline is given: phrase, clean RGBA sprite, requested path, visibility."""
        return [EntitySpec(e.text, image=np.array(e.sprite.image), trajectory=e.points.copy(), visible=e.visible.copy(),
                           kind="object") for e in self.entities]

    def backdrop_case(self) -> EvalCase:
        """The same case with no entities: its frames are the background alone (for the placement check's backdrop)."""
        if self.background is None:
            raise InputError(f"case {self.id} has no background; make it with make_cases")
        return EvalCase(f"{self.id}-backdrop", self.prompt, [], np.repeat(self.background[None], len(self.frames), axis=0),
                        self.background)


def make_cases(num_cases: int, num_frames: int, height: int, width: int, split: str = "heldout", seed: int = 0,
               entity_counts=ENTITY_COUNTS) -> list[EvalCase]:
    """``num_cases`` cases per entity count, from ``split``'s sprites and path seeds; deterministic."""
    check_split(split, CLIP_SPLITS)
    if num_cases < 1:
        raise InputError(f"--cases is {num_cases}; evaluate at least 1 case per entity count")
    sprites = load_sprites(split)
    cases = []
    for count in entity_counts:
        for i in range(num_cases):
            rng = clip_rng(seed, split, CASE_INDEX_BASE + 1000 * count + i)
            background, entities = draw_clip(rng, sprites, num_frames, height, width, count, split)  # synthesize_clip's draws
            cases.append(EvalCase(f"{count}e-{i:03d}", make_caption(entities, height, width), entities,
                                  render_clip(background, entities), background))
    return cases


def _crops(frames: np.ndarray, points: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    picks = np.unique(np.linspace(0, len(frames) - 1, CROP_FRAMES).round().astype(int))
    return [crop_square(frames[f], points[f], sizes[f] * CROP_MARGIN) for f in picks]


def score_video(frames: np.ndarray, case: EvalCase, encoder=None, shuffled: list[np.ndarray] | None = None,
                backdrop: np.ndarray | None = None) -> list[dict]:
    """Metrics of one video against one case → one row per entity.

    frames: (F, H, W, 3) uint8. ``encoder``: a SemanticImageEncoder (None skips appearance).
    ``shuffled``: per entity, another entity's RGBA reference for the shuffled-reference baseline.
    ``backdrop``: (F, H, W, 3) the video's background without its sprites where it is known (the
    ground truth and its round trip); otherwise the placement check fits one to the video.
    """
    expected = case.frames.shape
    if frames.shape != expected or frames.dtype != np.uint8:
        raise InputError(f"video for case {case.id} is {frames.dtype} {tuple(frames.shape)}; expected uint8 {expected}")
    width = frames.shape[2]
    tracks = [track_entity(frames, e.sprite.image) for e in case.entities]
    requested = [e.points for e in case.entities]
    bound = binding_correct([t.points for t in tracks], requested)
    agreement = placement_agreement(frames, case.entities, backdrop)  # (E,): drawn where asked, without the tracker
    rows = []
    for i, (entity, track) in enumerate(zip(case.entities, tracks)):
        error = trajectory_error(track.points, entity.points, entity.visible)
        closest = closest_path(entity, [e for e in case.entities if e is not entity])
        row = {"case": case.id, "num_entities": case.num_entities, "entity": entity.id, "text": entity.text,
               "traj_error_px": error, "traj_error_pct_width": 100.0 * error / width,
               "closest_path_pct_width": None if closest is None else 100.0 * closest / width,
               "binding_correct": None if bound is None else bound[i],
               "placement_agreement": float(agreement[i]),
               "appearance_similarity": None, "appearance_similarity_shuffled": None}
        if encoder is not None:
            crops = _crops(frames, track.points, track.sizes)
            generated = embed(encoder, crops)  # (k, C)
            own = embed(encoder, [sprite_on_white(entity.sprite)])[0]  # (C,)
            row["appearance_similarity"] = float((generated @ own).mean())
            if shuffled is not None:
                other = embed(encoder, [sprite_on_white(shuffled[i])])[0]
                row["appearance_similarity_shuffled"] = float((generated @ other).mean())
        rows.append(row)
    return rows


def closest_path(entity: SyntheticEntity, others: list[SyntheticEntity]) -> float | None:
    """The closest (px) any other entity's point comes to this one's in a frame where both are
    visible; None without another entity (or a shared visible frame)."""
    gaps = [np.linalg.norm(entity.points - o.points, axis=1)[entity.visible & o.visible] for o in others]  # (F',) each
    gaps = [g for g in gaps if g.size]
    return float(min(g.min() for g in gaps)) if gaps else None


def shuffled_references(cases: list[EvalCase]) -> list[list[np.ndarray]]:
    """Per case and entity, the sprite of the next entity (over all cases) with a different sprite."""
    flat = [e.sprite for c in cases for e in c.entities]
    out, k = [], 0
    for case in cases:
        row = []
        for e in case.entities:
            step = 1
            while flat[(k + step) % len(flat)].codepoint == e.sprite.codepoint and step < len(flat):
                step += 1
            row.append(flat[(k + step) % len(flat)].image)
            k += 1
        out.append(row)
    return out


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Per entity count ("1", "2", "3") and over all ("all"): means of every metric."""
    groups = {str(n): [r for r in rows if r["num_entities"] == n] for n in sorted({r["num_entities"] for r in rows})}
    groups["all"] = rows
    summary = {}
    for name, group in groups.items():
        bindings = [r["binding_correct"] for r in group if r["binding_correct"] is not None]
        near = [r for r in group if r.get("closest_path_pct_width") is not None and r["closest_path_pct_width"] < NEAR_PCT]
        summary[name] = {
            "entities": len(group),
            "cases": len({r["case"] for r in group}),
            "traj_error_px": _mean(r["traj_error_px"] for r in group),
            "traj_error_pct_width": _mean(r["traj_error_pct_width"] for r in group),
            "binding_accuracy": float(np.mean(bindings)) if bindings else None,
            "appearance_similarity": _mean(r["appearance_similarity"] for r in group),
            "appearance_similarity_shuffled": _mean(r["appearance_similarity_shuffled"] for r in group),
            "lost": sum(_lost(r) for r in group),  # entities with TrajError > LOST_PCT
            "near": len(near),  # entities whose path meets another's (closer than NEAR_PCT)
            "lost_near": sum(_lost(r) for r in near),
            # the tracker-free check (None for rows scored before it existed)
            "placement_agreement": _mean(r.get("placement_agreement") for r in group),
            "misplaced": _count(group, lambda r: r["placement_agreement"] < PLACED_MIN),
            "lost_placed": _count(group, lambda r: _lost(r) and r["placement_agreement"] >= PLACED_MIN),
        }
    return summary


def _count(rows: list[dict], test) -> int | None:
    """How many rows with a placement agreement pass ``test``; None when no row has one."""
    scored = [r for r in rows if r.get("placement_agreement") is not None and np.isfinite(r["placement_agreement"])]
    return sum(bool(test(r)) for r in scored) if scored else None


def _lost(row: dict) -> bool:
    return row["traj_error_pct_width"] is not None and row["traj_error_pct_width"] > LOST_PCT


def run_evaluation(cases: list[EvalCase], generate: Callable[[EvalCase], np.ndarray], encoder=None,
                   progress: bool = False, keep: Callable[[EvalCase, np.ndarray], None] | None = None,
                   backdrop_known: bool = False) -> dict:
    """Generate and score every case → {"rows": [...], "summary": {...}}; ``keep(case, frames)`` sees
    every generated video (e.g. to draw a sheet of some of them). ``backdrop_known``: ``generate``
    maps a clip to itself or its autoencoder round trip, so the placement check's backdrop is the
    case's background through ``generate`` (``EvalCase.backdrop_case``), not a fitted surface."""
    shuffled = shuffled_references(cases)
    iterator = list(zip(cases, shuffled))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="evaluating", unit="case")
    rows = []
    for case, others in iterator:
        frames = np.asarray(generate(case))
        if keep is not None:
            keep(case, frames)
        backdrop = np.asarray(generate(case.backdrop_case())).astype(np.float32) if backdrop_known else None
        rows += score_video(frames, case, encoder, others, backdrop)
    return {"rows": rows, "summary": summarize(rows)}


def first_cases(cases: list[EvalCase], per_count: int) -> set[str]:
    """Ids of the first ``per_count`` cases of each entity count (the ones a sheet shows)."""
    taken: dict[int, int] = {}
    ids = set()
    for case in cases:
        if taken.get(case.num_entities, 0) < per_count:
            ids.add(case.id)
            taken[case.num_entities] = taken.get(case.num_entities, 0) + 1
    return ids


def case_sheet(cases: list[EvalCase], videos: dict[str, np.ndarray], scale: int = 2) -> Image.Image:
    """Per case in ``videos``: its ground-truth render, then the generated video with the requested
    paths drawn (tora2.trajectory.preview.sheet_rows), one strip each, cases one under the other."""
    from tora2.trajectory.preview import sheet_rows, stack_rows

    rows = []
    for case in cases:
        if case.id not in videos:
            continue
        paths, visible = [e.points for e in case.entities], [e.visible for e in case.entities]
        rows += [sheet_rows(case.frames, paths, visible, scale)[0], sheet_rows(videos[case.id], paths, visible, scale)[1]]
    return stack_rows(rows)


def format_table(summary: dict[str, dict]) -> str:
    """A Markdown table: one line per entity count, then all."""
    def cell(value, fmt):
        return "—" if value is None else format(value, fmt)

    lines = ["| entities | cases | TrajError (px) | TrajError (% width) | binding acc. | appearance sim. | shuffled-ref sim. "
             "| lost (where paths meet) | placement agr. | misplaced (lost but placed) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lost = f"{s['lost']}/{s['entities']}" + (f" ({s['lost_near']}/{s['near']})" if s["near"] else "")
        misplaced = "—" if s.get("misplaced") is None else f"{s['misplaced']}/{s['entities']} ({s['lost_placed']})"
        lines.append(f"| {name} | {s['cases']} | {cell(s['traj_error_px'], '.2f')} | {cell(s['traj_error_pct_width'], '.2f')} | "
                     f"{cell(s['binding_accuracy'], '.3f')} | {cell(s['appearance_similarity'], '.3f')} | "
                     f"{cell(s['appearance_similarity_shuffled'], '.3f')} | {lost} | {cell(s.get('placement_agreement'), '.3f')} | "
                     f"{misplaced} |")
    return "\n".join(lines)


def pipeline_generator(pipe, num_inference_steps: int = 50, guidance_scale: float = 6.0, seed: int = 0,
                       **guidance) -> Callable[[EvalCase], np.ndarray]:
    """``generate(case)`` with a Tora2Pipeline: the case's prompt, entities and size; uint8 frames.
    ``guidance``: the pipeline's ``reference_guidance_scale`` / ``trajectory_guidance_scale``."""
    import torch

    def generate(case: EvalCase) -> np.ndarray:
        num_frames, height, width = case.frames.shape[:3]
        out = pipe(case.prompt, entities=case.entity_specs(), num_frames=num_frames, height=height, width=width,
                   num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                   generator=torch.Generator().manual_seed(seed), output_type="np", **guidance)
        frames = np.asarray(out.frames[0])  # (F, H, W, 3) in [0, 1]
        return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)

    return generate


def reconstruction_generator(pipe) -> Callable[[EvalCase], np.ndarray]:
    """``generate(case)`` = the case's ground-truth frames encoded and decoded by ``pipe``'s VAE, exactly as
    training encodes clips (posterior mode, scaled) and the pipeline decodes latents; uint8 frames."""
    import torch

    from tora2.pipelines.conditioning import encode_video

    def generate(case: EvalCase) -> np.ndarray:
        video = torch.from_numpy(case.frames).permute(0, 3, 1, 2).float()[None] / 127.5 - 1.0  # (1, F, 3, H, W)
        with torch.no_grad():
            latents = encode_video(pipe.vae, video)  # (1, Fl, C, h, w)
            decoded = pipe.decode_latents(latents)  # (1, 3, F, H, W) in [−1, 1]
        frames = (decoded[0].permute(1, 2, 3, 0).float().numpy() + 1.0) * 127.5  # (F, H, W, 3)
        return np.clip(np.rint(frames), 0, 255).astype(np.uint8)

    return generate
