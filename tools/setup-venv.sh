#!/usr/bin/env bash
# Create tools/.venv (if missing) and install the pinned Python dependencies of tools/
# (requirements.txt), then print the installed versions.
#
#   tools/setup-venv.sh
#   tools/.venv/bin/python tools/gconv_torch.py --self-test
#   tools/.venv/bin/python tools/make_goldens.py      # regenerate tools/golden/
#   tools/.venv/bin/python tools/train_digits.py      # regenerate models/ (~1 minute on CPU)
#
# Only PyPI is needed. torch from PyPI comes with its nvidia-* / cuda-toolkit / triton wheels
# (about 5 GB installed; pip caches the downloads in ~/.cache/pip). Installing torch 2.15.0
# with --no-deps to skip them does NOT work: `import torch` then fails on a missing
# libcublasLt. Everything here runs on the CPU. The Rust tests do not need this venv: they
# read the committed files in tools/golden/ and models/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

"$venv/bin/pip" install -r "$here/requirements.txt"

"$venv/bin/python" -c 'import torch, numpy, sklearn, safetensors; print("torch", torch.__version__, "numpy", numpy.__version__, "scikit-learn", sklearn.__version__, "safetensors", safetensors.__version__)'
