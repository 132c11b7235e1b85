#!/usr/bin/env bash
# Reproduce the embedded default model (tora2/data/embedded/) end to end on CPU:
#   1. the per-frame VAE on synthetic sprite clips  (configs/train/embedded-vae.yaml, tora2/training/vae.py)
#   2. the text and image encoders, CLIP-style      (configs/train/embedded-encoders.yaml, tora2/training/pretrain_encoders.py)
#   3. transformer + DPE, stage `full`, curriculum  (configs/train/embedded.yaml, scripts/train_embedded.py)
#   4. the same, fine-tuned on gradient backgrounds  (configs/train/embedded-gradient.yaml)
#   5. only with STAGE5=1: + reference latents, from stage 4's weights (configs/train/embedded-reference.yaml;
#      measured, not shipped: docs/results.md, "Reference latents")
#   6. stage 4 + the per-entity appearance term (configs/train/embedded-appearance.yaml)
#   7. stage 6 + placement latents, on recoloured clips (configs/train/embedded-placement.yaml)
#   8. stage 7 + 1500 steps of its recipe (configs/train/embedded-continued.yaml)
#  2c. stage 2's encoders + ≈ 1100 extra emoji identities (configs/train/embedded-encoders-extra.yaml;
#      only its image encoder is kept: held-out retrieval 0.958)
#  L1. the 36-component linear autoencoder fitted, with stage 8's encoders and DPE (configs/train/embedded-pca-vae.yaml)
#  L5. transformer + DPE from stage 8 on L1's latents, x-prediction, stage 2c's image encoder, the
#      moving average of the weights (configs/train/embedded-pca-ema.yaml)
#   then copy L5's pipeline into the package and write the training-curve plot.
# With VAE_MODEL=1 also the model shipped before L5, on stage 8's VAE latents (now
#   checkpoints/embedded/vae-model-pipeline): 1c. stage 1's VAE encoder kept, its decoder widened to
#   32/64/64 and trained twice 20 min (configs/train/embedded-vae-wide.yaml); 1d. that decoder fine-tuned
#   20 min on the denoiser's own latents of 50 training-split cases (scripts/decoder_pairs.py,
#   configs/train/embedded-vae-pairs.yaml); the transformer is stage 8's. It is not shipped.
# With PER_ENTITY=1 also stage 8 with one placement canvas per entity slot (measured, not shipped).
# With CROWDED=1 also stage 9: stage 8 on 2-3-entity clips only (configs/train/embedded-crowded.yaml;
#   measured, not shipped).
# With PIXEL=1 the pixel-space model instead (docs/results.md, "Pixel space"):
#   P1. the lossless pixel autoencoder's channel statistics, the shipped encoders and DPE (configs/train/embedded-pixel-vae.yaml)
#   P2. transformer + DPE on pixel latents, x-prediction, curriculum on gradients (configs/train/embedded-pixel.yaml)
#   then P2's pipeline is shipped.
# With LINEAR=1 the other linear-latent stages from stage 8 + 1c (checkpoints/embedded/stage8-pipeline;
#   docs/results.md, "Linear latents"; measured, not shipped, so use --no-ship):
#   L1, then L2. transformer + DPE from stage 8 on its latents, stage 8's encoders (configs/train/embedded-pca.yaml)
#   L2b. L2 on 800 new clips (configs/train/embedded-pca-continued.yaml)
#   L4. a learned decoder on L2's latents, from L2's own generated latents (configs/train/embedded-pca-decoder.yaml)
# Usage: scripts/train_embedded.sh [--no-ship]   (PYTHON=... the interpreter; CLIPS=800 per curriculum phase;
#        CURRICULUM=... stage 3's phases, see tora2/synthetic/curriculum.py; RESUME=latest continues stage 4
#        (or P2) from its last checkpoint, the stages before it being done; stages 6 to L5 then follow)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CLIPS=${CLIPS:-800}
CURRICULUM=${CURRICULUM:-1:gradient:300,2:gradient+texture:800,3:all}
RESUME=${RESUME:-}
SHIP=1
[[ "${1:-}" == "--no-ship" ]] && SHIP=0

if [[ "${LINEAR:-0}" == 1 ]]; then
  "$PY" -m tora2.training.vae configs/train/embedded-pca-vae.yaml
  "$PY" scripts/train_embedded.py configs/train/embedded-pca.yaml --clips "$CLIPS" --clip-seed 1 --recolour --curriculum 3:gradient
  "$PY" scripts/train_embedded.py configs/train/embedded-pca-continued.yaml --clips "$CLIPS" --clip-seed 3 --recolour --curriculum 3:gradient
  "$PY" scripts/decoder_pairs.py runs/embedded/pca/pipeline runs/embedded/pca-pairs.pt --cases 100
  "$PY" -m tora2.training.vae configs/train/embedded-pca-decoder.yaml
  SHIPPED=runs/embedded/pca-continued/pipeline
elif [[ "${PIXEL:-0}" == 1 ]]; then
  [[ -z "$RESUME" ]] && "$PY" -m tora2.training.vae configs/train/embedded-pixel-vae.yaml
  "$PY" scripts/train_embedded.py configs/train/embedded-pixel.yaml --clips "$CLIPS" \
      --curriculum "1:gradient:300,2:gradient:800,3:gradient" ${RESUME:+--resume "$RESUME"}
  SHIPPED=runs/embedded/pixel/pipeline
elif [[ -z "$RESUME" ]]; then
  "$PY" -m tora2.training.vae configs/train/embedded-vae.yaml
  "$PY" -m tora2.training.pretrain_encoders configs/train/embedded-encoders.yaml
  "$PY" scripts/train_embedded.py configs/train/embedded.yaml --clips "$CLIPS" --curriculum "$CURRICULUM"
fi
if [[ "${PIXEL:-0}" != 1 && "${LINEAR:-0}" != 1 ]]; then
  "$PY" scripts/train_embedded.py configs/train/embedded-gradient.yaml --clips "$CLIPS" --curriculum 3:gradient ${RESUME:+--resume "$RESUME"}
  "$PY" scripts/train_embedded.py configs/train/embedded-appearance.yaml --clips "$CLIPS" --curriculum 3:gradient
  "$PY" scripts/train_embedded.py configs/train/embedded-placement.yaml --clips "$CLIPS" --clip-seed 1 --recolour --curriculum 3:gradient
  "$PY" scripts/train_embedded.py configs/train/embedded-continued.yaml --clips "$CLIPS" --clip-seed 1 --recolour --curriculum 3:gradient
  STAGE8=runs/embedded/continued/pipeline
  if [[ "${VAE_MODEL:-0}" == 1 ]]; then
    "$PY" -m tora2.training.vae configs/train/embedded-vae-wide.yaml
    "$PY" -m tora2.training.vae configs/train/embedded-vae-wide.yaml --set init_vae=runs/embedded/vae-wide/pipeline/vae \
        --set output_dir=runs/embedded/vae-wide2 --set seed=1 --set data.seed=1
    "$PY" scripts/decoder_pairs.py runs/embedded/vae-wide2/pipeline runs/embedded/shipped-pairs.pt --cases 50
    "$PY" -m tora2.training.vae configs/train/embedded-vae-pairs.yaml --set init_vae=runs/embedded/vae-wide2/pipeline/vae \
        --set model.pretrained=runs/embedded/vae-wide2/pipeline
  fi
  "$PY" -m tora2.training.pretrain_encoders configs/train/embedded-encoders-extra.yaml --set model.pretrained=$STAGE8
  "$PY" -m tora2.training.vae configs/train/embedded-pca-vae.yaml --set model.pretrained=$STAGE8
  "$PY" scripts/train_embedded.py configs/train/embedded-pca-ema.yaml --clips "$CLIPS" --clip-seed 1 --recolour --curriculum 3:gradient \
      --set model.init_weights.transformer=$STAGE8/transformer \
      --set model.components.image_encoder=runs/embedded/encoders-extra/pipeline/image_encoder
  SHIPPED=runs/embedded/pca-ema/pipeline
fi
if [[ "${CROWDED:-0}" == 1 ]]; then
  "$PY" scripts/train_embedded.py configs/train/embedded-crowded.yaml --clips "$CLIPS" --clip-seed 2 --recolour --curriculum 2-3:gradient
fi
if [[ "${PER_ENTITY:-0}" == 1 ]]; then
  "$PY" scripts/train_embedded.py configs/train/embedded-continued.yaml --clips "$CLIPS" --clip-seed 1 --recolour --curriculum 3:gradient \
      --set model.transformer.entity_placement_per_entity=true --set output_dir=runs/embedded/per-entity
fi
if [[ "${STAGE5:-0}" == 1 ]]; then
  "$PY" scripts/train_embedded.py configs/train/embedded-reference.yaml --clips "$CLIPS" --clip-seed 1 --recolour --curriculum 3:gradient
fi
"$PY" scripts/plot_training.py runs/embedded -o docs/training-curves.png --json docs/training-curves.json

if [[ $SHIP == 1 ]]; then
  rm -rf tora2/data/embedded.tmp
  cp -r "$SHIPPED" tora2/data/embedded.tmp
  rm -rf tora2/data/embedded
  mv tora2/data/embedded.tmp tora2/data/embedded
  du -sh tora2/data/embedded
fi
