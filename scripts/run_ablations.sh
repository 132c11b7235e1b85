#!/usr/bin/env bash
# The paper's ablations at the embedded model's budget (docs/results.md): each variant trains stage
# `full` from the same encoder-stage pipeline, clips, curriculum, seed and step count as the shipped
# model (configs/train/embedded.yaml) for STEPS steps, changing one thing, then `tora2 eval` scores
# it on the same held-out cases. Every variant, the `full` baseline included, starts its transformer
# from a fresh seeded init (model.init_weights={}): the architecture variants cannot load the shipped
# weights, so none does. Two variants run at a time, one thread each (2-core machine).
# Usage: scripts/run_ablations.sh [variant ...]   (default: all five; PYTHON=..., CLIPS=800, CASES=10, STEPS=1500)
#
# MODE=finetune: each variant instead fine-tunes the stage-3 pipeline FROM (default
# runs/embedded/full/pipeline) on gradient backgrounds for STEPS (default 500) steps with stage 4's
# settings (configs/train/embedded-gradient.yaml), its transformer loaded from FROM with the changed
# field (model.init_weights): the budget at which the model works. Only variants with the same
# weights qualify: full, no-contrastive, p-then-m, no-locality (binder: none/linear change the layers).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CLIPS=${CLIPS:-800}
CURRICULUM=${CURRICULUM:-1:gradient:300,2:gradient+texture:800,3:all}
CASES=${CASES:-10}
MODE=${MODE:-scratch}
FROM=${FROM:-runs/embedded/full/pipeline}
[[ $MODE == finetune ]] && STEPS=${STEPS:-500}
STEPS=${STEPS:-1500}
declare -A CHANGE=(
  [full]="model.transformer={}"
  [no-binding]="model.transformer={binder: none}"
  [linear-binding]="model.transformer={binder: linear}"
  [no-contrastive]="contrastive_weight=0"
  [p-then-m]="model.transformer={block_order: personalization_first}"
  [no-locality]="model.transformer={entity_locality_sigma: null}"
)
variants=("$@")
if [[ ${#variants[@]} == 0 ]]; then
  if [[ $MODE == finetune ]]; then variants=(full no-contrastive p-then-m no-locality); else variants=(full no-binding linear-binding no-contrastive p-then-m); fi
fi

# What the two modes differ in, once: the stage config, its clips, where the weights start, the run folder.
if [[ $MODE == finetune ]]; then
  # The same layers as the weights it starts from: the locality bias made flat (σ = 1000 widths, so
  # every entity token and the null token get bias ≈ 0) instead of removed with its null token.
  CHANGE[no-locality]="model.transformer={entity_locality_sigma: 1000.0}"
  CONFIG=configs/train/embedded-gradient.yaml PHASES=3:gradient PREFIX=finetune-
  START=(--set "model.pretrained=$FROM" --set "model.init_weights={transformer: $FROM/transformer}")
else
  CONFIG=configs/train/embedded.yaml PHASES=$CURRICULUM PREFIX=
  START=(--set "model.init_weights={}")
fi

run_one() {
  local name=$1 out=runs/ablations/$PREFIX$1
  mkdir -p "$out"
  OMP_NUM_THREADS=1 "$PY" scripts/train_embedded.py "$CONFIG" --clips "$CLIPS" --curriculum "$PHASES" \
    --set "output_dir=$out/train" --set "${CHANGE[$name]}" "${START[@]}" --set max_steps="$STEPS" \
    --set checkpoint_every=0 > "$out/train.log" 2>&1
  OMP_NUM_THREADS=1 "$PY" -m cli.main eval -m "$out/train/pipeline" --cases "$CASES" -o "$out/eval.json" > "$out/eval.log" 2>&1
  echo "$name: $(tail -n 7 "$out/eval.log" | grep '^| all')"
}

for name in "${variants[@]}"; do
  [[ -n "${CHANGE[$name]:-}" ]] || { echo "unknown variant $name; use one of ${!CHANGE[*]}" >&2; exit 2; }
  if [[ $MODE == finetune && $name == *binding ]]; then
    echo "variant $name changes the layers, so it cannot start from $FROM; MODE=finetune takes full, no-contrastive, p-then-m, no-locality" >&2; exit 2
  fi
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
