#!/usr/bin/env python3
"""PyTorch side of the WebGPU benchmark (bench/gpu.ts), on CUDA, in the same run.

Two sections, each isolated (an error in one is printed and recorded, the other still runs,
and the output files are written after each):

1. Matmul: the shapes of bench/webgpu.bench.ts `matmulShapes` for the `small` and
   `minimind2` presets with B*T = 8*512 = 4096 tokens (keep the two lists in step), in fp32
   with TF32 off (the same arithmetic as the WGSL kernel), fp32 with TF32 on, and bf16.
   CUDA events around `reps` back-to-back calls after a warm-up, best of 3 trials.

2. Training step: the same model as src/model/gpt.ts, written here as plain functions over a
   dict of tensors named as in Hugging Face Qwen3 (and in gpt.ts): token embedding, per layer
   pre-norm RMSNorm -> q/k/v projections (weights (out, in), applied as x @ W^T) -> per-head
   QK-norm (RMSNorm over the head dim, when the preset has it) -> rotate-half RoPE ->
   causal GQA attention (query head h reads KV head h // (NH/NKV)) -> o_proj, residual;
   pre-norm RMSNorm -> SwiGLU MLP down(silu(gate(x)) * up(x)), residual; final RMSNorm; LM head
   tied to the embedding. RMSNorm eps 1e-6, RoPE theta 10000, no biases. Initialisation as
   gpt.ts: normal(0, 0.02), o_proj and down_proj scaled by 1/sqrt(2 * layers), norms 1.
   One step = forward, mean cross-entropy, backward, global grad-norm clip at 1, optimizer,
   zero grads: what minichat's Trainer.trainStep() does, at the pretraining defaults
   (lr 3e-3, weight decay 0, AdamW betas (0.9, 0.95), eps 1e-8). Optimizers:
     adamw  torch.optim.AdamW on everything (fused=True when available)
     muon   Muon (Newton-Schulz 5, momentum 0.95 Nesterov, Moonlight scale 0.2*sqrt(max(out,in)),
            the same quintic as src/optim/muon.ts) on the hidden matrices, AdamW on the
            embedding and the norms' gains, as src/optim/index.ts splits them.
   Precision modes: fp32 (TF32 off: the arithmetic of our WGSL kernels), tf32, and bf16
   autocast (weights and optimizer in fp32; Muon's Newton-Schulz in bf16 as in the reference
   implementation). Eager PyTorch, no torch.compile. Timing: CUDA events around each step
   after warm-up steps, the median reported; tokens/s = B*T / median.

    python3 bench/torch_bench.py [OUT_DIR]   # writes OUT_DIR/torch.json and OUT_DIR/torch.md
    python3 bench/torch_bench.py --dry-run   # no torch needed: checks the table merging
    python3 bench/torch_bench.py --cpu-smoke # torch on the CPU, micro model: checks the model code
    python3 bench/torch_bench.py --cpu-train tiny:16:128:adamw --threads 1,2 --steps 5 --warmup 1
        # torch on the CPU beside minichat's cpu/wasm backends (bench/train.bench.ts calls this):
        # one preset:B:T:optimizer at each thread count; prints one JSON line (prefix TORCH_JSON)

If OUT_DIR/webgpu.json exists (from bench/gpu.ts), torch.md puts the WebGPU numbers beside
the torch ones, with the ratio torch / webgpu; a row WebGPU lacks is shown as "—".
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time
import traceback

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # --dry-run works without torch
    torch = None
    F = None

# ---------------------------------------------------------------------------------------
# configuration (from src/model/gpt.ts PRESETS and src/train/pretrain.ts defaults)
# ---------------------------------------------------------------------------------------

PRESETS = {
    # name: (C hidden, F intermediate, V vocab, NH, NKV, HS)  for the matmul shapes
    "small": (384, 1024, 4096, 6, 2, 64),
    "minimind2": (768, 2048, 6400, 8, 2, 96),
}
TOKENS = 8 * 512

MODEL_PRESETS = {
    # the whole model config; "micro" is bench/train.bench.ts MICRO (tiny, shrunk), for smoke tests
    "small": dict(vocab=4096, hidden=384, layers=6, heads=6, kv_heads=2, head_dim=64, inter=1024, qk_norm=True),
    "minimind2": dict(vocab=6400, hidden=768, layers=16, heads=8, kv_heads=2, head_dim=96, inter=2048, qk_norm=False),
    "tiny": dict(vocab=2048, hidden=128, layers=4, heads=4, kv_heads=2, head_dim=32, inter=384, qk_norm=True),
    "micro": dict(vocab=256, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, inter=128, qk_norm=True),
}
RMS_EPS = 1e-6
ROPE_THETA = 10000.0
LR, WEIGHT_DECAY, GRAD_CLIP, BETAS, ADAM_EPS = 3e-3, 0.0, 1.0, (0.9, 0.95), 1e-8
NS_COEFFS = (3.4445, -4.775, 2.0315)
DASH = "—"

# ---------------------------------------------------------------------------------------
# 1. matmul
# ---------------------------------------------------------------------------------------


def matmul_shapes(name, C, F_, V, NH, NKV, HS):
    """[label, M, K, N, transA, transB], as in webgpu.bench.ts matmulShapes."""
    N, qkv = TOKENS, (NH + 2 * NKV) * HS
    return [
        (f"{name} qkv proj", N, C, qkv, False, False),
        (f"{name} attn out proj", N, NH * HS, C, False, False),
        (f"{name} mlp up", N, C, F_, False, False),
        (f"{name} mlp down", N, F_, C, False, False),
        (f"{name} lm head", N, C, V, False, False),
        (f"{name} lm head dX (dY Wᵀ)", N, V, C, False, True),
        (f"{name} mlp up dW (Xᵀ dY)", C, N, F_, True, False),
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


def run_matmul():
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
    return rows


# ---------------------------------------------------------------------------------------
# 2. the model (mirrors src/model/gpt.ts)
# ---------------------------------------------------------------------------------------


def param_specs(cfg):
    """(name, shape, init) for every parameter, in gpt.ts paramSpecs order (tied head: no lm_head)."""
    C, q, kv, Fd = cfg["hidden"], cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"], cfg["inter"]
    specs = [("model.embed_tokens.weight", (cfg["vocab"], C), "normal")]
    for l in range(cfg["layers"]):
        p = f"model.layers.{l}."
        specs += [(p + "input_layernorm.weight", (C,), "ones"),
                  (p + "self_attn.q_proj.weight", (q, C), "normal"),
                  (p + "self_attn.k_proj.weight", (kv, C), "normal"),
                  (p + "self_attn.v_proj.weight", (kv, C), "normal"),
                  (p + "self_attn.o_proj.weight", (C, q), "scaled")]
        if cfg["qk_norm"]:
            specs += [(p + "self_attn.q_norm.weight", (cfg["head_dim"],), "ones"),
                      (p + "self_attn.k_norm.weight", (cfg["head_dim"],), "ones")]
        specs += [(p + "post_attention_layernorm.weight", (C,), "ones"),
                  (p + "mlp.gate_proj.weight", (Fd, C), "normal"),
                  (p + "mlp.up_proj.weight", (Fd, C), "normal"),
                  (p + "mlp.down_proj.weight", (C, Fd), "scaled")]
    specs.append(("model.norm.weight", (C,), "ones"))
    return specs


def init_params(cfg, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape, init in param_specs(cfg):
        if init == "ones":
            t = torch.ones(shape)
        else:
            std = 0.02 / math.sqrt(2 * cfg["layers"]) if init == "scaled" else 0.02
            t = torch.randn(shape, generator=g) * std
        params[name] = t.to(device).requires_grad_(True)
    return params


def rms_norm(x, w):
    """RMSNorm over the last axis, computed in fp32 (as HF Qwen3), returned in x's dtype."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + RMS_EPS)
    return (y * w.float()).to(x.dtype)


def rope_tables(T, hs, device):
    """cos, sin (T, hs): angle(t, i) = t * theta^(-2i/hs), the half repeated (rotate-half layout)."""
    inv = ROPE_THETA ** (-torch.arange(0, hs, 2, dtype=torch.float32, device=device) / hs)
    ang = torch.arange(T, dtype=torch.float32, device=device)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """x (B, H, T, hs): x*cos + rotate_half(x)*sin with rotate_half([x1, x2]) = [-x2, x1]."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def forward(p, cfg, idx, cos, sin):
    """Logits (B, T, V) for token ids idx (B, T)."""
    B, T = idx.shape
    NH, NKV, HS = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    x = F.embedding(idx, p["model.embed_tokens.weight"])  # (B, T, C)
    for l in range(cfg["layers"]):
        pre = f"model.layers.{l}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"])
        q = F.linear(h, p[pre + "self_attn.q_proj.weight"]).view(B, T, NH, HS).transpose(1, 2)  # (B, NH, T, HS)
        k = F.linear(h, p[pre + "self_attn.k_proj.weight"]).view(B, T, NKV, HS).transpose(1, 2)  # (B, NKV, T, HS)
        v = F.linear(h, p[pre + "self_attn.v_proj.weight"]).view(B, T, NKV, HS).transpose(1, 2)
        if cfg["qk_norm"]:
            q = rms_norm(q, p[pre + "self_attn.q_norm.weight"])
            k = rms_norm(k, p[pre + "self_attn.k_norm.weight"])
        q, k = apply_rope(q, cos[:T], sin[:T]), apply_rope(k, cos[:T], sin[:T])
        k = k.repeat_interleave(NH // NKV, dim=1)  # query head h reads KV head h // (NH/NKV)
        v = v.repeat_interleave(NH // NKV, dim=1)
        y = causal_attention(q, k, v)  # (B, NH, T, HS), scale 1/sqrt(HS)
        y = y.transpose(1, 2).reshape(B, T, NH * HS)
        x = x + F.linear(y, p[pre + "self_attn.o_proj.weight"])
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"])
        gate = F.linear(h, p[pre + "mlp.gate_proj.weight"])
        up = F.linear(h, p[pre + "mlp.up_proj.weight"])
        x = x + F.linear(F.silu(gate) * up, p[pre + "mlp.down_proj.weight"])
    x = rms_norm(x, p["model.norm.weight"])
    return F.linear(x, p["model.embed_tokens.weight"])  # tied LM head


def causal_attention(q, k, v):
    """softmax(q kᵀ / sqrt(HS), causal) v: PyTorch's fused kernel where it exists (torch >= 2.0),
    else the same maths written out (Debian's torch 1.13 has no scaled_dot_product_attention)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return att.masked_fill(mask, float("-inf")).softmax(-1) @ v


def newton_schulz5(G, steps=5):
    """≈ the orthogonal polar factor of G (as src/optim/muon.ts newtonSchulz5)."""
    a, b, c = NS_COEFFS
    X = G / (G.norm() + 1e-7)
    tall = X.size(0) > X.size(1)
    if tall:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.T if tall else X


class Muon:
    """Muon on a list of matrices (src/optim/muon.ts: Nesterov momentum, NS5, Moonlight scale)."""

    def __init__(self, params, lr, momentum=0.95, weight_decay=0.0, ns_dtype=None):
        self.params, self.lr, self.mu, self.wd = params, lr, momentum, weight_decay
        self.ns_dtype = ns_dtype
        self.bufs = [torch.zeros_like(p) for p in params]

    def step(self):
        with torch.no_grad():
            for W, buf in zip(self.params, self.bufs):
                if W.grad is None:
                    continue
                G = W.grad
                buf.mul_(self.mu).add_(G)  # B <- mu*B + G
                U = G.add(buf, alpha=self.mu)  # Nesterov: G + mu*B
                O = newton_schulz5(U.to(self.ns_dtype or U.dtype)).to(W.dtype)
                if self.wd > 0:
                    W.mul_(1 - self.lr * self.wd)
                W.add_(O, alpha=-self.lr * 0.2 * math.sqrt(max(W.shape)))

    def zero_grad(self, set_to_none=True):
        for W in self.params:
            W.grad = None


def is_muon_param(name, t):
    return t.dim() == 2 and "embed_tokens" not in name and "lm_head" not in name


def make_adamw(params):
    """torch.optim.AdamW (fused when this torch and device allow); 1-D gains never decayed."""
    decay = [t for t in params if t.dim() >= 2]
    no_decay = [t for t in params if t.dim() < 2]
    groups = [g for g in [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}] if g["params"]]
    kw = dict(lr=LR, betas=BETAS, eps=ADAM_EPS)
    if params[0].is_cuda:
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (TypeError, RuntimeError, ValueError):
            pass
    try:
        return torch.optim.AdamW(groups, foreach=True, **kw), "foreach"
    except (TypeError, RuntimeError, ValueError):
        return torch.optim.AdamW(groups, **kw), "default"


def time_train(preset, optimizer, mode, B, T, device, warmup, steps):
    """Median ms per training step (and a few details) for one configuration."""
    cfg = MODEL_PRESETS[preset]
    cuda = device == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = mode == "tf32"
    params = init_params(cfg, device)
    plist = list(params.values())
    if optimizer == "muon":
        mats = [t for n, t in params.items() if is_muon_param(n, t)]
        rest = [t for n, t in params.items() if not is_muon_param(n, t)]
        adam, adam_kind = make_adamw(rest)
        opts = [Muon(mats, LR, weight_decay=WEIGHT_DECAY, ns_dtype=torch.bfloat16 if mode == "bf16" else None), adam]
    else:
        adam, adam_kind = make_adamw(plist)
        opts = [adam]
    cos, sin = rope_tables(T, cfg["head_dim"], device)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, cfg["vocab"], (B, T + 1), generator=g).to(device) for _ in range(4)]
    use_bf16 = mode == "bf16"

    def step(i):
        xy = batches[i % len(batches)]
        x, y = xy[:, :-1], xy[:, 1:]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
            logits = forward(params, cfg, x, cos, sin)
        loss = F.cross_entropy(logits.float().reshape(-1, cfg["vocab"]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plist, GRAD_CLIP)
        for o in opts:
            o.step()
        for o in opts:
            o.zero_grad(set_to_none=True)
        return loss

    for i in range(warmup):
        loss = step(i)
    first_loss = float(loss.item()) if warmup else float("nan")
    times = []
    if cuda:
        torch.cuda.synchronize()
        events = []
        t0 = time.perf_counter()
        for i in range(steps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            loss = step(warmup + i)
            e.record()
            events.append((s, e))
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        times = [s.elapsed_time(e) for s, e in events]
    else:
        t0 = time.perf_counter()
        for i in range(steps):
            s = time.perf_counter()
            loss = step(warmup + i)
            times.append((time.perf_counter() - s) * 1e3)
        wall = time.perf_counter() - t0
    ms = statistics.median(times)
    n_params = sum(t.numel() for t in plist)
    row = {"preset": preset, "optimizer": optimizer, "mode": mode, "B": B, "T": T, "params": n_params, "steps": steps,
           "ms": ms, "ms_min": min(times), "wall_ms_per_step": wall / steps * 1e3, "tokens_per_sec": B * T / (ms / 1e3),
           "loss_first": first_loss, "loss_last": float(loss.item()), "adamw": adam_kind}
    if cuda:
        row["max_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    print(f"{preset:10s} {optimizer:5s} {mode:4s} B{B} T{T} {n_params / 1e6:.2f}M params: {ms:8.2f} ms/step (median of {steps}), "
          f"{row['tokens_per_sec']:10.0f} tok/s, loss {first_loss:.3f} -> {row['loss_last']:.3f}, AdamW {adam_kind}")
    del params, plist, opts, adam
    if cuda:
        torch.cuda.empty_cache()
    return row


def run_train(device, presets, modes, B, T, warmup, steps, errors):
    rows = []
    for preset in presets:
        for optimizer in ("muon", "adamw"):
            for mode in modes:
                try:
                    rows.append(time_train(preset, optimizer, mode, B, T, device, warmup, steps))
                except Exception as e:  # keep going: one failure must not lose the others
                    traceback.print_exc()
                    errors.append(f"train {preset} {optimizer} {mode}: {type(e).__name__}: {e}")
                    if device == "cuda":
                        torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------------------
# tables (pure Python: checked by --dry-run without torch)
# ---------------------------------------------------------------------------------------


def load_webgpu(out_dir):
    """Our numbers from bench/gpu.ts: ({matmul label: GFLOP/s}, {(preset, optimizer): train row}, adapter)."""
    path = os.path.join(out_dir, "webgpu.json")
    if not os.path.exists(path):
        return {}, {}, None
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError) as e:
        print(f"torch_bench: cannot read {path}: {e}")
        return {}, {}, None
    matmul = {}
    for r in rec.get("rows") or []:
        m = re.match(r"^(.*) \((\d+),(\d+),(\d+)\)", str(r.get("shape", "")))
        if r.get("kernel") == "matmul" and m and isinstance(r.get("gflops"), (int, float)):
            matmul[m.group(1)] = r["gflops"]
    train = {}
    for r in (rec.get("train") or {}).get("rows") or []:
        if isinstance(r, dict) and "preset" in r and "optimizer" in r:
            train[(r["preset"], r["optimizer"])] = r
    adapter = rec.get("adapter")
    if isinstance(adapter, dict):
        adapter = " / ".join(str(v) for v in adapter.values() if v)
    return matmul, train, adapter


def fmt(x, spec=".1f"):
    return format(x, spec) if isinstance(x, (int, float)) and math.isfinite(x) else DASH


def ratio(a, b):
    return f"{a / b:.1f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else DASH


def matmul_table(rows, webgpu):
    lines = ["| shape | M,K,N | webgpu fp32 | torch fp32 | torch tf32 | torch bf16 | fp32 torch/webgpu |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        w = webgpu.get(r["shape"])
        lines.append(f"| {r['shape']} | {r['M']},{r['K']},{r['N']} | {fmt(w)} | {fmt(r.get('fp32_gflops'))} | "
                     f"{fmt(r.get('tf32_gflops'))} | {fmt(r.get('bf16_gflops'))} | {ratio(r.get('fp32_gflops'), w)} |")
    return lines


def train_table(rows, webgpu_train):
    """One line per (preset, optimizer) present on either side; tokens/s; "—" where missing."""
    torch_by = {}
    for r in rows:
        torch_by.setdefault((r["preset"], r["optimizer"]), {})[r["mode"]] = r
    keys = list(dict.fromkeys(list(torch_by) + list(webgpu_train)))
    lines = ["| preset | optimizer | params | webgpu B×T | webgpu ms/step | webgpu tok/s | torch fp32 tok/s | torch tf32 tok/s | "
             "torch bf16 tok/s | fp32 torch/webgpu | bf16 torch/webgpu |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in keys:
        t, w = torch_by.get(key, {}), webgpu_train.get(key)
        tok = {m: (t[m]["tokens_per_sec"] if m in t else None) for m in ("fp32", "tf32", "bf16")}
        params = (w or {}).get("params") or next((x["params"] for x in t.values()), None)
        wtok = w.get("tokensPerSec") if w else None
        wbt = f"{w['B']}×{w['T']}" if w and "B" in w and "T" in w else DASH
        lines.append(f"| {key[0]} | {key[1]} | {fmt(params / 1e6 if params else None, '.2f')}M | {wbt} | "
                     f"{fmt(w.get('ms') if w else None)} | {fmt(wtok, '.0f')} | {fmt(tok['fp32'], '.0f')} | {fmt(tok['tf32'], '.0f')} | "
                     f"{fmt(tok['bf16'], '.0f')} | {ratio(tok['fp32'], wtok)} | {ratio(tok['bf16'], wtok)} |")
    return lines


def write_outputs(out_dir, record, webgpu_dir):
    matmul_w, train_w, adapter = load_webgpu(webgpu_dir)
    head = f"device: {record.get('device')}; torch {record.get('torch')}" + (f"; WebGPU adapter: {adapter}" if adapter else "")
    md = [head, ""]
    if record.get("matmul") is not None:
        md += ["### matmul, GFLOP/s (B*T = 8*512)", ""] + matmul_table(record["matmul"], matmul_w) + [""]
    if record.get("train") is not None:
        b_t = f"{record.get('train_B')}×{record.get('train_T')}"
        md += [f"### training step, tokens/s (torch at B×T = {b_t}; median step; eager PyTorch, CUDA events)", ""]
        md += train_table(record["train"], train_w) + [""]
    if record.get("errors"):
        md += ["errors:", ""] + [f"- {e}" for e in record["errors"]] + [""]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "torch.json"), "w") as f:
        json.dump(record, f, indent=2)
    with open(os.path.join(out_dir, "torch.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return "\n".join(md)


def dry_run(out_dir):
    """Fake torch rows through the real table code, against OUT_DIR/webgpu.json if present,
    else a made-up one that lacks a row (to show the "—")."""
    import tempfile
    wdir = out_dir
    if not os.path.exists(os.path.join(out_dir, "webgpu.json")):
        wdir = tempfile.mkdtemp()
        fake = {"adapter": {"vendor": "fake", "description": "dry run"},
                "rows": [{"kernel": "matmul", "shape": "small qkv proj (4096,384,640)", "gflops": 1000.0}],
                "train": {"rows": [{"backend": "webgpu", "preset": "small", "optimizer": "adamw", "B": 8, "T": 512, "params": 11.02e6, "ms": 100.0, "tokensPerSec": 40960.0}]}}
        with open(os.path.join(wdir, "webgpu.json"), "w") as f:
            json.dump(fake, f)
    _, train_w, _ = load_webgpu(wdir)
    presets = sorted({k[0] for k in train_w} | {"small", "minimind2"})
    matmul = [{"shape": label, "M": M, "K": K, "N": N, "fp32_gflops": 2000.0, "tf32_gflops": 8000.0, "bf16_gflops": 16000.0}
              for name, dims in PRESETS.items() for label, M, K, N, _, _ in matmul_shapes(name, *dims)]
    train = [{"preset": p, "optimizer": o, "mode": m, "params": 1e6, "tokens_per_sec": 1e5 * (i + 1), "B": 8, "T": 512}
             for p in presets for o in ("muon", "adamw") for i, m in enumerate(("fp32", "tf32", "bf16"))]
    train = [r for r in train if not (r["preset"] == "minimind2" and r["mode"] == "tf32")]  # a missing torch cell too
    record = {"device": "dry run (no torch)", "torch": None, "matmul": matmul, "train": train, "train_B": 8, "train_T": 512,
              "errors": ["dry run: a made-up error line"]}
    out = tempfile.mkdtemp()
    print(write_outputs(out, record, wdir))
    print(f"dry run OK (tables written to {out}; webgpu.json from {wdir})")


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


def blas_name():
    """The BLAS library this process actually loaded (torch's build info often says 'generic')."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    try:
        with open("/proc/self/maps") as f:
            libs = {os.path.basename(line.split()[-1]) for line in f if re.search(r"blas|mkl|lapack", line.split()[-1] if line.split() else "")}
        return ", ".join(sorted(libs)) or "unknown"
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", nargs="?", default=os.path.join(os.environ.get("OUT", "."), "gpu-results"))
    ap.add_argument("--dry-run", action="store_true", help="check the table merging without torch")
    ap.add_argument("--cpu-smoke", action="store_true", help="run the training step on the CPU with the micro model")
    ap.add_argument("--cpu-train", help="PRESET:B:T:OPTIMIZER, timed on the CPU at each of --threads")
    ap.add_argument("--threads", default="1", help="comma-separated CPU thread counts for --cpu-train")
    ap.add_argument("--skip-matmul", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per configuration")
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    if args.dry_run:
        dry_run(args.out_dir)
        return
    if torch is None:
        sys.exit("torch_bench: PyTorch is not installed (use --dry-run to check the table code)")
    errors = []
    if args.cpu_train:
        preset, B, T, optimizer = args.cpu_train.split(":")
        rows = []
        for n in [int(x) for x in args.threads.split(",")]:
            torch.set_num_threads(n)
            row = time_train(preset, optimizer, "fp32", int(B), int(T), "cpu", args.warmup, args.steps)
            row["threads"] = n
            rows.append(row)
        print("TORCH_JSON " + json.dumps({"torch": torch.__version__, "blas": blas_name(), "rows": rows}))
        return
    if args.cpu_smoke:
        rows = run_train("cpu", ["micro"], ["fp32", "bf16"], 2, 32, 1, 3, errors)
        record = {"device": "cpu (smoke test)", "torch": torch.__version__, "train": rows, "train_B": 2, "train_T": 32, "errors": errors}
        out = os.path.join(args.out_dir, "cpu-smoke")
        print(write_outputs(out, record, args.out_dir))
        sys.exit(1 if errors else 0)
    if not torch.cuda.is_available():
        sys.exit("torch_bench: CUDA is not available")
    device = torch.cuda.get_device_name(0)
    print(f"device: {device}, torch {torch.__version__}")
    record = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda, "tokens": TOKENS,
              "matmul": None, "train": None, "train_B": 8, "train_T": 512, "errors": errors}
    if not args.skip_matmul:
        try:
            record["matmul"] = run_matmul()
        except Exception as e:
            traceback.print_exc()
            errors.append(f"matmul: {type(e).__name__}: {e}")
        write_outputs(args.out_dir, record, args.out_dir)
    if not args.skip_train:
        record["train"] = run_train("cuda", ["small", "minimind2"], ["fp32", "tf32", "bf16"], 8, 512, args.warmup, args.steps, errors)
    print(write_outputs(args.out_dir, record, args.out_dir))
    print(f"-> {args.out_dir}/torch.json, {args.out_dir}/torch.md")


if __name__ == "__main__":
    main()
