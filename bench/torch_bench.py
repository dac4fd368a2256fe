#!/usr/bin/env python3
"""PyTorch side of the WebGPU matmul benchmark: the same shapes, fp32 and bf16, on CUDA.

The shapes are those of bench/webgpu.bench.ts `matmulShapes` for the `small` and
`minimind2` presets with B*T = 8*512 = 4096 tokens (keep the two lists in step).
fp32 runs twice: with TF32 tensor cores off (the same arithmetic as the WGSL kernel) and on
(PyTorch's default for convolutions, opt-in for matmul). Timing: CUDA events around `reps`
back-to-back calls after a warm-up, best of 3 trials.

    python3 bench/torch_bench.py [OUT_DIR]     # writes OUT_DIR/torch.json and torch.md

If OUT_DIR/webgpu.json exists (from bench/gpu.ts), torch.md also gets a side-by-side table
with the WebGPU GFLOP/s and the ratio torch / webgpu for each shape.
"""
import json
import os
import re
import sys

import torch

PRESETS = {
    # name: (C hidden, F intermediate, V vocab, NH, NKV, HS)  from src/model/gpt.ts PRESETS
    "small": (384, 1024, 4096, 6, 2, 64),
    "minimind2": (768, 2048, 6400, 8, 2, 96),
}
TOKENS = 8 * 512


def matmul_shapes(name, C, F, V, NH, NKV, HS):
    """[label, M, K, N, transA, transB], as in webgpu.bench.ts matmulShapes."""
    N, qkv = TOKENS, (NH + 2 * NKV) * HS
    return [
        (f"{name} qkv proj", N, C, qkv, False, False),
        (f"{name} attn out proj", N, NH * HS, C, False, False),
        (f"{name} mlp up", N, C, F, False, False),
        (f"{name} mlp down", N, F, C, False, False),
        (f"{name} lm head", N, C, V, False, False),
        (f"{name} lm head dX (dY Wᵀ)", N, V, C, False, True),
        (f"{name} mlp up dW (Xᵀ dY)", C, N, F, True, False),
    ]


def time_matmul(M, K, N, transA, transB, dtype, reps=50, trials=3):
    a = torch.randn((K, M) if transA else (M, K), device="cuda", dtype=dtype)
    b = torch.randn((N, K) if transB else (K, N), device="cuda", dtype=dtype)
    opA = a.t() if transA else a
    opB = b.t() if transB else b
    torch.matmul(opA, opB)  # warm-up (cuBLAS heuristics, allocator)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(trials):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            torch.matmul(opA, opB)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1000 / reps)
    return best


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("OUT", "."), "gpu-results")
    os.makedirs(out_dir, exist_ok=True)
    if not torch.cuda.is_available():
        sys.exit("torch_bench: CUDA is not available")
    device = torch.cuda.get_device_name(0)
    print(f"device: {device}, torch {torch.__version__}")
    rows = []
    for name, dims in PRESETS.items():
        for label, M, K, N, tA, tB in matmul_shapes(name, *dims):
            flops = 2 * M * K * N
            row = {"shape": label, "M": M, "K": K, "N": N, "transA": tA, "transB": tB}
            for key, dtype, tf32 in [("fp32", torch.float32, False), ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)]:
                torch.backends.cuda.matmul.allow_tf32 = tf32
                s = time_matmul(M, K, N, tA, tB, dtype)
                row[f"{key}_ms"] = s * 1e3
                row[f"{key}_gflops"] = flops / s / 1e9
            torch.backends.cuda.matmul.allow_tf32 = False
            rows.append(row)
            print(f"{label:32s} ({M},{K},{N}) fp32 {row['fp32_gflops']:9.1f}  tf32 {row['tf32_gflops']:9.1f}  bf16 {row['bf16_gflops']:9.1f} GFLOP/s")
    with open(os.path.join(out_dir, "torch.json"), "w") as f:
        json.dump({"device": device, "torch": torch.__version__, "tokens": TOKENS, "rows": rows}, f, indent=2)

    # side by side with the WebGPU numbers, matched on the shape label
    webgpu = {}
    wpath = os.path.join(out_dir, "webgpu.json")
    if os.path.exists(wpath):
        with open(wpath) as f:
            for r in json.load(f)["rows"]:
                m = re.match(r"^(.*) \((\d+),(\d+),(\d+)\)", r["shape"])
                if r["kernel"] == "matmul" and m:
                    webgpu[m.group(1)] = r["gflops"]
    lines = [f"device: {device}; torch {torch.__version__}; GFLOP/s", "",
             "| shape | M,K,N | webgpu fp32 | torch fp32 | torch tf32 | torch bf16 | fp32 torch/webgpu |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        w = webgpu.get(r["shape"])
        ratio = f"{r['fp32_gflops'] / w:.1f}x" if w else ""
        lines.append(f"| {r['shape']} | {r['M']},{r['K']},{r['N']} | {w:.1f} |" if w else f"| {r['shape']} | {r['M']},{r['K']},{r['N']} | |")
        lines[-1] += f" {r['fp32_gflops']:.1f} | {r['tf32_gflops']:.1f} | {r['bf16_gflops']:.1f} | {ratio} |"
    with open(os.path.join(out_dir, "torch.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"-> {out_dir}/torch.json, {out_dir}/torch.md")


if __name__ == "__main__":
    main()
