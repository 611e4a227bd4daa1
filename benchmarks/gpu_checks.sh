#!/bin/bash
# The insight checks on an NVIDIA GPU: every layer offloaded, flash attention on, NVML telemetry.
# Needs a CUDA build of llama-cpp-python (README: "GPU offload") and, for the comparison with
# llama.cpp's own benchmark, its llama-bench built from the same llama.cpp.
#
# usage: bash benchmarks/gpu_checks.sh OUTDIR [LLAMA_BENCH]
# writes: session.json (short, medium, long: cold runs, decode breakdown, GPU per phase),
#         sweep.json (7 prompt lengths, one prefill chunk a run, interleaved), nvml.txt
#         (benchmarks/bench_gpu_telemetry.py), bench_engine.txt (ttftui vs llama-cpp-python and
#         llama-bench at 128/512/2048), session_largest_first.json (warmup_policy = largest_first)
set -u
out=${1:?usage: gpu_checks.sh OUTDIR [LLAMA_BENCH]}
lb=${2:-}
py=${PYTHON:-python3}
mkdir -p "$out"
gpu=(--headless -q --set model.n_gpu_layers=-1 --set model.flash_attn=on --set telemetry.backend=nvml)
step() { echo "== $1 ($(date +%T))" >&2; }

step "session: short, medium, long; 2 warm-ups + 10 runs each"
timeout 180 "$py" -m ttftui "${gpu[@]}" --set run.iterations=10 --set run.warmup=2 -o "$out/session.json"
echo "exit $?" >&2

step "NVML resolution and cost"
timeout 120 "$py" benchmarks/bench_gpu_telemetry.py > "$out/nvml.txt" 2>&1
echo "exit $?" >&2

step "sweep: 7 prompt lengths, 1 + 5 runs each, interleaved"
timeout 180 "$py" -m ttftui "${gpu[@]}" --set model.n_batch=2048 --set run.iterations=5 --set run.warmup=1 \
    --set run.order=interleaved \
    --set "scenarios=[{name='sweep', prompt_tokens=[128, 256, 512, 1024, 1280, 1536, 2048], max_tokens=4}]" \
    -o "$out/sweep.json"
echo "exit $?" >&2

step "bench_engine: ttftui vs llama-cpp-python and llama-bench"
timeout 300 "$py" benchmarks/bench_engine.py --n-gpu-layers -1 --flash-attn on --prompts 128,512,2048 --gen 100 \
    --threads 8 --rounds 5 --bench-rounds 3 ${lb:+--llama-bench "$lb"} > "$out/bench_engine.txt" 2>&1
echo "exit $?" >&2

step "session with warmup_policy = largest_first"
timeout 180 "$py" -m ttftui "${gpu[@]}" --set run.iterations=10 --set run.warmup=2 \
    --set run.warmup_policy=largest_first -o "$out/session_largest_first.json"
echo "exit $?" >&2
