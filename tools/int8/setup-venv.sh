#!/usr/bin/env bash
# Create tools/int8/.venv (if missing) and install the pinned Python dependencies of
# tools/int8/ (requirements.txt), then print the installed versions.
#
#   tools/int8/setup-venv.sh
#   tools/int8/.venv/bin/python tools/int8/probe_findings.py       # the README's findings
#   tools/int8/.venv/bin/python tools/int8/make_conv_goldens.py    # tools/golden/int8-conv/
#   tools/int8/.venv/bin/python tools/int8/make_layer_goldens.py   # tools/golden/int8-layers/
#   tools/int8/.venv/bin/python tools/int8/make_model_selftest.py  # tools/golden/int8-model-selftest/
#   tools/int8/.venv/bin/python tools/int8/tflite_model.py --model DIR --images X.npy --output Y.npy
#
# Only PyPI is needed (ai-edge-litert is a ~40 MB wheel; no TensorFlow, no torch). The Rust
# tests do not need this venv: they read the committed files in tools/golden/int8-*/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

"$venv/bin/pip" install -r "$here/requirements.txt"

"$venv/bin/python" -c 'import importlib.metadata as m; print(" ".join(f"{p} {m.version(p)}" for p in ("ai-edge-litert", "numpy", "flatbuffers", "safetensors")))'
