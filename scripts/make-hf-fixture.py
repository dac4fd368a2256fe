#!/usr/bin/env python3
"""Write test/fixtures/hf-llama-tiny: a tiny Hugging Face LlamaForCausalLM directory in
SmolLM2's layout, and the logits an independent forward pass computes for it.

    python3 scripts/make-hf-fixture.py            # rewrites test/fixtures/hf-llama-tiny/

Nothing here uses minichat's code: Hugging Face `transformers` and `tokenizers` are not
needed (nor installed here), so every file is written by hand following their formats:

  config.json                   LlamaForCausalLM keys as SmolLM2-135M has them (no QK-norm,
                                GQA, rope_theta 1e5, rms_norm_eps 1e-5), but an UNTIED head
  tokenizer.json                a byte-level BPE trained below on a few sentences, with
                                SmolLM2's pre-tokenizer (Digits, then ByteLevel with GPT-2's
                                regex) and its three added tokens, the way `tokenizers` writes it
  model.safetensors.index.json  two shards: the first in bfloat16, the second in float16
  model-0000N-of-00002.safetensors
  expected.json                 a text and its ids under Hugging Face's BPE algorithm (merges
                                applied by priority, per pre-token)
  expected-logits.safetensors   "logits" (T, V) F32: a float64 numpy Llama forward pass over
                                those ids, rounded to float32

Needs numpy and the `regex` package (Python's `re` has no \\p{L}). Deterministic (seed 0).
"""
import json
import os
import struct

import numpy as np
import regex

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'hf-llama-tiny')

# --- sizes ------------------------------------------------------------------------------
HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
HEAD_DIM = HIDDEN // HEADS
THETA, EPS, CONTEXT = 100000.0, 1e-5, 64
N_MERGES = 45
ADDED = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']  # ids 0, 1, 2, as in SmolLM2

# --- the byte-level alphabet (GPT-2's bytes_to_unicode) ---------------------------------
def bytes_to_unicode():
    keep = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars

B2U = bytes_to_unicode()

# --- pre-tokenization, as tokenizers does it --------------------------------------------
GPT2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

def pre_tokenize(text):
    """Digits(individual_digits=True): every numeric character is a piece of its own; then
    ByteLevel(use_regex=True) runs GPT-2's regex inside each piece and maps bytes to chars."""
    pieces, cur = [], ''
    for ch in text:
        if ch.isnumeric():
            if cur:
                pieces.append(cur)
                cur = ''
            pieces.append(ch)
        else:
            cur += ch
    if cur:
        pieces.append(cur)
    words = []
    for p in pieces:
        for m in GPT2.finditer(p):
            words.append(''.join(B2U[b] for b in m.group(0).encode('utf-8')))
    return words

# --- a tiny BPE trainer (most frequent pair, ties broken by the pair itself) ------------
CORPUS = [
    'The cat sat on the mat. The dog sat on the log.',
    'the theme of the thesis: there, then, them; 12 cats and 345 dogs in 2024!',
    'Once upon a time there was a little cat that sat in the sun.',
    'café au lait, naïve déjà vu — the end.',
]

def train_merges(n):
    counts = {}
    for line in CORPUS:
        for w in pre_tokenize(line):
            counts[tuple(w)] = counts.get(tuple(w), 0) + 1
    merges = []
    for _ in range(n):
        pairs = {}
        for w, c in counts.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        new = {}
        for w, c in counts.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        counts = new
    return merges

MERGES = train_merges(N_MERGES)
VOCAB = {t: i for i, t in enumerate(ADDED)}
for ch in sorted(B2U.values()):  # the trainer's alphabet, in character order
    VOCAB[ch] = len(VOCAB)
for a, b in MERGES:
    VOCAB[a + b] = len(VOCAB)
V = len(VOCAB)
RANK = {m: i for i, m in enumerate(MERGES)}

def bpe(word):
    """tokenizers' BPE on one pre-token: merge the adjacent pair with the best merge priority
    until none is left (GPT-2's bpe(), which tokenizers reproduces)."""
    parts = list(word)
    while len(parts) > 1:
        cands = [(RANK[(a, b)], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if (a, b) in RANK]
        if not cands:
            break
        r, _ = min(cands)
        a, b = MERGES[r]
        out, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(parts[i])
                i += 1
        parts = out
    return [VOCAB[p] for p in parts]

def encode(text):
    return [i for w in pre_tokenize(text) for i in bpe(w)]

# --- weights ----------------------------------------------------------------------------
rng = np.random.default_rng(0)

def normal(*shape, std=0.2):
    return (rng.standard_normal(shape) * std).astype(np.float32)

def gain(n):
    return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

weights = {'model.embed_tokens.weight': normal(V, HIDDEN, std=0.5)}
for l in range(LAYERS):
    p = f'model.layers.{l}.'
    weights[p + 'input_layernorm.weight'] = gain(HIDDEN)
    weights[p + 'self_attn.q_proj.weight'] = normal(HEADS * HEAD_DIM, HIDDEN)
    weights[p + 'self_attn.k_proj.weight'] = normal(KV_HEADS * HEAD_DIM, HIDDEN)
    weights[p + 'self_attn.v_proj.weight'] = normal(KV_HEADS * HEAD_DIM, HIDDEN)
    weights[p + 'self_attn.o_proj.weight'] = normal(HIDDEN, HEADS * HEAD_DIM)
    weights[p + 'post_attention_layernorm.weight'] = gain(HIDDEN)
    weights[p + 'mlp.gate_proj.weight'] = normal(FFN, HIDDEN)
    weights[p + 'mlp.up_proj.weight'] = normal(FFN, HIDDEN)
    weights[p + 'mlp.down_proj.weight'] = normal(HIDDEN, FFN)
weights['model.norm.weight'] = gain(HIDDEN)
weights['lm_head.weight'] = normal(V, HIDDEN)

def to_bf16(a):
    """float32 -> bfloat16 bits, round to nearest even; and the float32 value they stand for."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return rounded, (rounded.astype(np.uint32) << 16).view(np.float32)

def to_f16(a):
    h = a.astype(np.float16)
    return h.view(np.uint16), h.astype(np.float32)

# shard 1 (bf16): the embedding and layer 0; shard 2 (f16): the rest
shard_of = {n: (1 if n == 'model.embed_tokens.weight' or n.startswith('model.layers.0.') else 2) for n in weights}
stored = {}  # name -> (dtype, raw uint16 array, the float32 values it decodes to)
for n, a in weights.items():
    raw, val = (to_bf16(a) if shard_of[n] == 1 else to_f16(a))
    stored[n] = ('BF16' if shard_of[n] == 1 else 'F16', raw, val)

def write_safetensors(path, names, tensors=None):
    tensors = tensors or stored
    header, blobs, off = {}, [], 0
    for n in names:
        dtype, raw, _ = tensors[n]
        data = raw.astype('<f4' if dtype == 'F32' else '<u2').tobytes()
        header[n] = {'dtype': dtype, 'shape': list(raw.shape), 'data_offsets': [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header['__metadata__'] = {'format': 'pt'}
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off

# --- the independent forward pass (float64) ---------------------------------------------
def forward(ids):
    W = {n: v.astype(np.float64) for n, (_, _, v) in stored.items()}
    T = len(ids)

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * w

    inv = THETA ** (-np.arange(0, HEAD_DIM, 2) / HEAD_DIM)  # (HS/2)
    ang = np.outer(np.arange(T), inv)  # (T, HS/2)
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)

    def rope(x):  # (H, T, HS), rotate-half as in transformers' Llama
        x1, x2 = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2 :]
        return x * cos + np.concatenate([-x2, x1], axis=-1) * sin

    x = W['model.embed_tokens.weight'][ids]  # (T, C)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(LAYERS):
        p = f'model.layers.{l}.'
        h = rms(x, W[p + 'input_layernorm.weight'])
        q = (h @ W[p + 'self_attn.q_proj.weight'].T).reshape(T, HEADS, HEAD_DIM).transpose(1, 0, 2)
        k = (h @ W[p + 'self_attn.k_proj.weight'].T).reshape(T, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        v = (h @ W[p + 'self_attn.v_proj.weight'].T).reshape(T, KV_HEADS, HEAD_DIM).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k = np.repeat(k, HEADS // KV_HEADS, axis=0)  # query head h reads KV head h // group
        v = np.repeat(v, HEADS // KV_HEADS, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(HEAD_DIM) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        y = (s / s.sum(axis=-1, keepdims=True)) @ v  # (H, T, HS)
        x = x + y.transpose(1, 0, 2).reshape(T, HEADS * HEAD_DIM) @ W[p + 'self_attn.o_proj.weight'].T
        h = rms(x, W[p + 'post_attention_layernorm.weight'])
        g = h @ W[p + 'mlp.gate_proj.weight'].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ W[p + 'mlp.up_proj.weight'].T)) @ W[p + 'mlp.down_proj.weight'].T
    return rms(x, W['model.norm.weight']) @ W['lm_head.weight'].T  # (T, V)

# --- write ------------------------------------------------------------------------------
def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    names = list(weights)
    files = {1: 'model-00001-of-00002.safetensors', 2: 'model-00002-of-00002.safetensors'}
    total = 0
    for s, f in files.items():
        total += write_safetensors(os.path.join(OUT, f), [n for n in names if shard_of[n] == s])
    with open(os.path.join(OUT, 'model.safetensors.index.json'), 'w') as f:
        json.dump({'metadata': {'total_size': total}, 'weight_map': {n: files[shard_of[n]] for n in names}}, f, indent=2)
    config = {
        'architectures': ['LlamaForCausalLM'], 'attention_bias': False, 'attention_dropout': 0.0,
        'bos_token_id': 0, 'eos_token_id': 0, 'hidden_act': 'silu', 'hidden_size': HIDDEN,
        'initializer_range': 0.02, 'intermediate_size': FFN, 'is_llama_config': True,
        'max_position_embeddings': CONTEXT, 'mlp_bias': False, 'model_type': 'llama',
        'num_attention_heads': HEADS, 'num_hidden_layers': LAYERS, 'num_key_value_heads': KV_HEADS,
        'pretraining_tp': 1, 'rms_norm_eps': EPS, 'rope_interleaved': False, 'rope_scaling': None,
        'rope_theta': THETA, 'tie_word_embeddings': False, 'torch_dtype': 'bfloat16',
        'transformers_version': '4.42.3', 'use_cache': True, 'vocab_size': V,
    }
    with open(os.path.join(OUT, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    tokenizer = {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': [{'id': i, 'content': t, 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False, 'special': True} for i, t in enumerate(ADDED)],
        'normalizer': None,
        'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
            {'type': 'Digits', 'individual_digits': True},
            {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}]},
        'post_processor': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': False, 'use_regex': True},
        'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None, 'end_of_word_suffix': None,
                  'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False, 'vocab': VOCAB, 'merges': [[a, b] for a, b in MERGES]},
    }
    with open(os.path.join(OUT, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=2)
    # the text: words the merges know, digits after spaces, a whitespace run, accents, an emoji
    text = 'The cat sat on the mat in 2024,   then 12 dogs:\tcafé 🙂 déjà vu.'
    ids = encode(text)
    assert len(ids) <= CONTEXT
    logits = forward(ids)
    expected = {
        'note': 'written by scripts/make-hf-fixture.py: ids by tokenizers\' BPE algorithm; expected-logits.safetensors by a float64 numpy Llama forward pass',
        'text': text,
        'ids': ids,
    }
    write_safetensors(os.path.join(OUT, 'expected-logits.safetensors'), ['logits'], {'logits': ('F32', logits.astype(np.float32), None)})
    with open(os.path.join(OUT, 'expected.json'), 'w', encoding='utf-8') as f:
        json.dump(expected, f, ensure_ascii=False)
    print(f'{OUT}: vocab {V}, {len(MERGES)} merges, {sum(a.size for a in weights.values())} parameters, {len(ids)} ids')

if __name__ == '__main__':
    main()
