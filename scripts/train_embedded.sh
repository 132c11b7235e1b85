#!/usr/bin/env bash
# Reproduce the embedded default model (tora2/data/embedded/) end to end on CPU:
#   1. the VAE on synthetic sprite clips        (configs/train/embedded-vae.yaml, tora2/training/vae.py)
#   2. transformer + DPE, stage `full`          (configs/train/embedded.yaml, scripts/train_embedded.py)
#   3. copy the pipeline into the package and write the training-curve plot.
# Usage: scripts/train_embedded.sh [--no-ship]      (PYTHON=... to pick the interpreter; CLIPS=3000)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CLIPS=${CLIPS:-3000}
SHIP=1
[[ "${1:-}" == "--no-ship" ]] && SHIP=0

"$PY" -m tora2.training.vae configs/train/embedded-vae.yaml
"$PY" scripts/train_embedded.py configs/train/embedded.yaml --clips "$CLIPS"
"$PY" scripts/plot_training.py runs/embedded -o docs/training-curves.png

if [[ $SHIP == 1 ]]; then
  rm -rf tora2/data/embedded.tmp
  cp -r runs/embedded/full/pipeline tora2/data/embedded.tmp
  rm -rf tora2/data/embedded
  mv tora2/data/embedded.tmp tora2/data/embedded
  du -sh tora2/data/embedded
fi
