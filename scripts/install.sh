#!/usr/bin/env bash
# One-shot set-up: a virtual environment with tora2 installed editable, CPU-safe.
#
#   VENV=.venv bash scripts/install.sh
#
# - No torch yet: torch is pinned to the CPU wheel in constraints.txt, so pip never pulls CUDA
#   packages on a CPU machine.
# - A torch already importable by the base python (e.g. a CUDA build on a GPU machine): the venv
#   sees it (--system-site-packages) and the constraints pin exactly that version, so it is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.tora2-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
existing=$($PY -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
if [ -n "$existing" ]; then
    echo "tora2 install: keeping the installed torch $existing"
    $PY -m venv --system-site-packages "$VENV"
    echo "torch==$existing" > "$constraints"
else
    $PY -m venv "$VENV"
    cp constraints.txt "$constraints"
fi
pip_() { "$VENV/bin/python" -m pip install -qq --disable-pip-version-check -c "$constraints" "$@"; }
pip_ -U pip
pip_ -e ".[test,studio]"
# insightface declares opencv-python (5.x: GUI build, no Haar cascades) which would shadow the
# headless build; its real dependencies are already in our list.
pip_ --no-deps "insightface>=0.7"
if "$VENV/bin/python" -m pip show -q opencv-python >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -y -qq opencv-python
    pip_ --force-reinstall --no-deps "opencv-python-headless>=4.8,<5"
fi
"$VENV/bin/python" -c "import tora2, cli.main, entities, gradio"
touch "$stamp"
echo "tora2 install: ready in $VENV"
