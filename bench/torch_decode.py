#!/usr/bin/env python3
"""PyTorch side of the batched-decode benchmark (bench/decode.bench.ts), on the CPU.

The same model as src/model/gpt.ts (the parameters, norms and RoPE of bench/torch_bench.py,
imported from there), run as minichat's engine runs it: prefill a (rows, prompt) batch once
into a KV cache preallocated for (rows, NKV, prompt + new, HS) and written in place, then one
position per step for every row, sampling at temperature 1 from the last logits
(torch.multinomial). Eager PyTorch, fp32, torch.inference_mode, no torch.compile.

For each case the best of 1 and 2 intra-op threads is reported (torch.set_num_threads), each
the best of `trials` runs after one warm-up run; the chosen thread count is in the output.

    python3 bench/torch_decode.py '{"cases": [{"preset": "tiny", "rows": 8, "prompt": 16, "new": 64}]}'

prints one JSON object: {"torch": version, "rows": [{preset, rows, prompt, new, threads,
prefill_ms, decode_tokens_per_sec, tokens_per_sec}]}.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench as tb  # noqa: E402  (the shared model definition)

torch, F = tb.torch, tb.F


def forward_cached(p, cfg, idx, cos, sin, cache_k, cache_v, pos):
    """Logits of the last position, (B, V), for ids idx (B, T) at positions [pos, pos+T);
    writes k, v into cache_k/cache_v[l][:, :, pos:pos+T] in place."""
    B, T = idx.shape
    NH, NKV, HS = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    x = F.embedding(idx, p["model.embed_tokens.weight"])  # (B, T, C)
    c, s = cos[pos:pos + T], sin[pos:pos + T]
    for l in range(cfg["layers"]):
        pre = f"model.layers.{l}."
        h = tb.rms_norm(x, p[pre + "input_layernorm.weight"])
        q = F.linear(h, p[pre + "self_attn.q_proj.weight"]).view(B, T, NH, HS).transpose(1, 2)  # (B, NH, T, HS)
        k = F.linear(h, p[pre + "self_attn.k_proj.weight"]).view(B, T, NKV, HS).transpose(1, 2)  # (B, NKV, T, HS)
        v = F.linear(h, p[pre + "self_attn.v_proj.weight"]).view(B, T, NKV, HS).transpose(1, 2)
        if cfg["qk_norm"]:
            q = tb.rms_norm(q, p[pre + "self_attn.q_norm.weight"])
            k = tb.rms_norm(k, p[pre + "self_attn.k_norm.weight"])
        q, k = tb.apply_rope(q, c, s), tb.apply_rope(k, c, s)
        cache_k[l][:, :, pos:pos + T] = k  # in place, like T.writeSlice
        cache_v[l][:, :, pos:pos + T] = v
        K = cache_k[l][:, :, :pos + T].repeat_interleave(NH // NKV, dim=1)  # (B, NH, S, HS)
        V = cache_v[l][:, :, :pos + T].repeat_interleave(NH // NKV, dim=1)
        # written out rather than F.scaled_dot_product_attention, which Debian's torch 1.13
        # lacks; query t (position pos + t) sees keys s <= pos + t
        att = (q @ K.transpose(-1, -2)) / (HS ** 0.5)  # (B, NH, T, S)
        if T > 1:
            S = pos + T
            allowed = torch.arange(S)[None, :] <= (pos + torch.arange(T))[:, None]  # (T, S)
            att = att.masked_fill(~allowed, float("-inf"))
        y = torch.softmax(att, -1) @ V  # (B, NH, T, HS)
        y = y.transpose(1, 2).reshape(B, T, NH * HS)
        x = x + F.linear(y, p[pre + "self_attn.o_proj.weight"])
        h = tb.rms_norm(x, p[pre + "post_attention_layernorm.weight"])
        x = x + F.linear(F.silu(F.linear(h, p[pre + "mlp.gate_proj.weight"])) * F.linear(h, p[pre + "mlp.up_proj.weight"]), p[pre + "mlp.down_proj.weight"])
    x = tb.rms_norm(x[:, -1], p["model.norm.weight"])
    return F.linear(x, p["model.embed_tokens.weight"])  # tied head, (B, V)


def run_once(p, cfg, rows, prompt, new, gen):
    """(prefill seconds, decode seconds) of one generation of `new` tokens for `rows` rows."""
    maxlen = prompt + new
    cos, sin = tb.rope_tables(maxlen, cfg["head_dim"], "cpu")
    shape = (rows, cfg["kv_heads"], maxlen, cfg["head_dim"])
    ck = [torch.zeros(shape) for _ in range(cfg["layers"])]
    cv = [torch.zeros(shape) for _ in range(cfg["layers"])]
    idx = torch.randint(0, cfg["vocab"], (rows, prompt), generator=gen)
    t0 = time.perf_counter()
    logits = forward_cached(p, cfg, idx, cos, sin, ck, cv, 0)
    nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)  # (rows, 1)
    t1 = time.perf_counter()
    for i in range(new - 1):
        logits = forward_cached(p, cfg, nxt, cos, sin, ck, cv, prompt + i)
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def check_cache(p, cfg):
    """The cached path's last logits equal one uncached forward over the same tokens (so the
    timed code computes the right thing); returns the max abs difference."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg["vocab"], (2, 7), generator=gen)
    cos, sin = tb.rope_tables(7, cfg["head_dim"], "cpu")
    fresh = lambda: [torch.zeros(2, cfg["kv_heads"], 7, cfg["head_dim"]) for _ in range(cfg["layers"])]
    ck, cv = fresh(), fresh()
    forward_cached(p, cfg, ids[:, :4], cos, sin, ck, cv, 0)
    for t in range(4, 7):
        last = forward_cached(p, cfg, ids[:, t:t + 1], cos, sin, ck, cv, t)
    whole = forward_cached(p, cfg, ids, cos, sin, fresh(), fresh(), 0)
    return (last - whole).abs().max().item()


def main():
    spec = json.loads(sys.argv[1])
    trials = spec.get("trials", 2)
    out = []
    with torch.inference_mode():
        for case in spec["cases"]:
            cfg = tb.MODEL_PRESETS[case["preset"]]
            p = {k: v.detach() for k, v in tb.init_params(cfg, "cpu").items()}
            err = check_cache(p, cfg)
            if not err < 1e-4:  # fp32 logits of a random model are O(1); rounding is ~1e-6
                raise SystemExit(f"torch_decode: cached and uncached logits differ by {err} on {case['preset']}")
            rows, prompt, new = case["rows"], case["prompt"], case["new"]
            best = None
            for threads in (1, 2):
                torch.set_num_threads(threads)
                gen = torch.Generator().manual_seed(0)
                run_once(p, cfg, rows, prompt, min(new, 4), gen)  # warm-up
                for _ in range(trials):
                    pre, dec = run_once(p, cfg, rows, prompt, new, gen)
                    r = dict(preset=case["preset"], rows=rows, prompt=prompt, new=new, threads=threads,
                             prefill_ms=pre * 1e3, decode_tokens_per_sec=rows * (new - 1) / dec,
                             tokens_per_sec=rows * new / (pre + dec))
                    if best is None or r["tokens_per_sec"] > best["tokens_per_sec"]:
                        best = r
            out.append(best)
            print(f"torch {case['preset']} rows={rows}: {best['tokens_per_sec']:.0f} tok/s ({best['threads']} threads)", file=sys.stderr)
    print(json.dumps({"torch": torch.__version__, "rows": out}))


if __name__ == "__main__":
    main()
