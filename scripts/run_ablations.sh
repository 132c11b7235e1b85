#!/usr/bin/env bash
# The paper's ablations at the embedded model's budget (docs/results.md): each variant trains stage
# `full` from the same encoder-stage pipeline, clips, curriculum, seed and step count as the shipped
# model (configs/train/embedded.yaml) for STEPS steps, changing one thing, then `tora2 eval` scores
# it on the same held-out cases. Every variant, the `full` baseline included, starts its transformer
# from a fresh seeded init (model.init_weights={}): the architecture variants cannot load the shipped
# weights, so none does. Two variants run at a time, one thread each (2-core machine).
# Usage: scripts/run_ablations.sh [variant ...]   (default: all five; PYTHON=..., CLIPS=800, CASES=10, STEPS=1500)
#
# MODE=finetune: each variant instead fine-tunes the stage-6 pipeline FROM (default
# runs/embedded/appearance/pipeline) for STEPS (default 250) steps with stage 7's recipe
# (configs/train/embedded-placement.yaml: placement latents, recoloured clips on gradient backgrounds),
# its transformer loaded from FROM with the changed field (model.init_weights): the budget at which the
# model works. Binder variants replace the gated binder, whose saved weights are skipped
# (model.init_weights_skip); every other layer loads. `no-placement` is the same steps without the
# placement latents (the control for stage 7's addition); `full` is stage 7's own first STEPS steps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CLIPS=${CLIPS:-800}
CURRICULUM=${CURRICULUM:-1:gradient:300,2:gradient+texture:800,3:all}
CASES=${CASES:-10}
MODE=${MODE:-scratch}
FROM=${FROM:-runs/embedded/appearance/pipeline}
[[ $MODE == finetune ]] && STEPS=${STEPS:-250}
STEPS=${STEPS:-1500}
# Dotted keys: a variant changes one transformer field and keeps the stage config's others.
declare -A CHANGE=(
  [full]="seed=0"
  [no-binding]="model.transformer.binder=none"
  [linear-binding]="model.transformer.binder=linear"
  [no-contrastive]="contrastive_weight=0"
  [p-then-m]="model.transformer.block_order=personalization_first"
  [no-locality]="model.transformer.entity_locality_sigma=null"
  [no-placement]="model.transformer.entity_placement_channels=null"
)
variants=("$@")
if [[ ${#variants[@]} == 0 ]]; then
  if [[ $MODE == finetune ]]; then variants=(full no-placement no-binding linear-binding no-contrastive p-then-m); else variants=(full no-binding linear-binding no-contrastive p-then-m); fi
fi

# What the two modes differ in, once: the stage config, its clips, where the weights start, the run folder.
if [[ $MODE == finetune ]]; then
  # The same layers as the weights it starts from: the locality bias made flat (σ = 1000 widths, so
  # every entity token and the null token get bias ≈ 0) instead of removed with its null token.
  CHANGE[no-locality]="model.transformer.entity_locality_sigma=1000.0"
  CONFIG=configs/train/embedded-placement.yaml PHASES=3:gradient PREFIX=finetune-
  START=(--set "model.pretrained=$FROM" --set "model.init_weights={transformer: $FROM/transformer}" --clip-seed 1 --recolour)
else
  CONFIG=configs/train/embedded.yaml PHASES=$CURRICULUM PREFIX=
  START=(--set "model.init_weights={}")
fi

run_one() {
  local name=$1 out=runs/ablations/$PREFIX$1 extra=()
  mkdir -p "$out"
  # A binder variant's saved gated-binder weights do not fit it: skip them, load every other layer.
  [[ $MODE == finetune && $name == *binding ]] && extra=(--set "model.init_weights_skip={transformer: [entity_binder.]}")
  OMP_NUM_THREADS=1 "$PY" scripts/train_embedded.py "$CONFIG" --clips "$CLIPS" --curriculum "$PHASES" \
    --set "output_dir=$out/train" --set "${CHANGE[$name]}" "${START[@]}" "${extra[@]}" --set max_steps="$STEPS" \
    --set checkpoint_every=0 > "$out/train.log" 2>&1
  OMP_NUM_THREADS=1 "$PY" -m cli.main eval -m "$out/train/pipeline" --cases "$CASES" -o "$out/eval.json" > "$out/eval.log" 2>&1
  echo "$name: $(tail -n 7 "$out/eval.log" | grep '^| all')"
}

for name in "${variants[@]}"; do
  [[ -n "${CHANGE[$name]:-}" ]] || { echo "unknown variant $name; use one of ${!CHANGE[*]}" >&2; exit 2; }
done
# The encodings are shared: fill the cache once before the parallel runs.
"$PY" scripts/train_embedded.py "$CONFIG" --clips "$CLIPS" --curriculum "$PHASES" "${START[@]}" --encode-only > /dev/null
pids=()
for name in "${variants[@]}"; do
  run_one "$name" &
  pids+=($!)
  if (( ${#pids[@]} == 2 )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait
