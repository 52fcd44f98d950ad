#!/usr/bin/env bash
# Create tools/escnn/.venv (if missing) and install escnn with its pinned dependencies.
#
#   tools/escnn/setup-venv.sh
#   tools/escnn/.venv/bin/python tools/escnn/export_banks.py   # regenerate tools/escnn/golden/
#
# Only PyPI is needed. torch comes with its CUDA wheels (a few GB; pip caches them). escnn is
# installed with --no-deps because its py3nj dependency needs a Fortran compiler and is only
# used for SO(3); every other dependency escnn imports is pinned in requirements.txt.
# The Rust tests do not need this venv: they read the committed golden files.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

"$venv/bin/pip" install -r "$here/requirements.txt"
"$venv/bin/pip" install --no-deps -r "$here/requirements-no-deps.txt"

"$venv/bin/python" -W ignore -c 'import escnn, torch, numpy; from escnn import gspaces, nn; from importlib.metadata import version; print("escnn", version("escnn"), "torch", torch.__version__, "numpy", numpy.__version__)'
