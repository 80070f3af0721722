"""The Llama decode benchmark's PyTorch side (Debian's python3-torch over OpenBLAS): the same two models as
`mt bench --big` with the same prompt and decode lengths, timed the same way.

- stories260K (data/stories260K/stories260K.bin, llama2.c format, float32): 64 prompt tokens, 256 decoded.
- the TinyLlama-1.1B shape (22 layers, dim 2048, 32 heads / 4 KV heads, SwiGLU 5632, vocab 32000) with
  random float32 weights (uniform, std 0.02): 32 prompt tokens, 16 decoded. (bfloat16 with --bf16; torch has
  no Q4_0 matmul on the CPU, so Q4_0 has no PyTorch reference here: llama.cpp's would be the one.)

Decode is one token per step against a KV cache, greedy, as ManagedTensor's Llama.Forward; the prompt is
one batched forward. Prints one line per model: "torch model=... dtype=... prefill_tok_s=... decode_tok_s=...".
Usage: python3 bench/llama_decode_vs_torch.py [--threads 2] [--big] [--bf16 | --f16] [--device cuda]"""
import argparse
import struct
import time

import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--big", action="store_true", help="also the 1.1B shape")
p.add_argument("--bf16", action="store_true", help="the 1.1B shape in bfloat16 instead of float32")
p.add_argument("--f16", action="store_true", help="the 1.1B shape in float16 (GPU)")
p.add_argument("--device", default="cpu", help="cpu or cuda (the GPU side of scripts/gpu_checks.sh llama)")
a = p.parse_args()
dev = torch.device(a.device)
torch.set_num_threads(a.threads)
torch.set_grad_enabled(False)


class Llama:
    """llama2.c's forward in torch: RMSNorm, interleaved RoPE, GQA attention over a KV cache, SwiGLU."""

    def __init__(self, dim, hidden, n_layers, n_heads, n_kv, vocab, seq, weights):
        self.dim, self.nh, self.nkv, self.hs, self.seq = dim, n_heads, n_kv, dim // n_heads, seq
        self.w = weights  # dict of tensors; layers are lists
        inv = 1.0 / (10000.0 ** (torch.arange(0, self.hs, 2, dtype=torch.float64) / self.hs))
        ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos().float().to(dev), ang.sin().float().to(dev)
        dt = weights["emb"].dtype
        self.k = torch.zeros(n_layers, seq, n_kv, self.hs, dtype=dt, device=dev)
        self.v = torch.zeros(n_layers, seq, n_kv, self.hs, dtype=dt, device=dev)

    @staticmethod
    def rms(x, g):
        xf = x.float()
        return (g.float() * xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype)

    def rope(self, x, start):  # x (T, heads, hs); pairs (2i, 2i+1)
        t = x.shape[0]
        c, s = self.cos[start:start + t, None, :], self.sin[start:start + t, None, :]
        xf = x.float()
        a, b = xf[..., 0::2], xf[..., 1::2]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2).to(x.dtype)

    def forward(self, tokens, start):
        w, t = self.w, len(tokens)
        x = w["emb"][torch.tensor(tokens, device=dev)]                             # (T, dim)
        groups = self.nh // self.nkv
        mask = torch.full((t, start + t), float("-inf"), device=dev).triu(start + 1)  # query i sees keys <= start + i
        for l in range(len(w["wq"])):
            h = self.rms(x, w["rms_att"][l])
            q = self.rope((h @ w["wq"][l].T).view(t, self.nh, self.hs), start)
            self.k[l, start:start + t] = self.rope((h @ w["wk"][l].T).view(t, self.nkv, self.hs), start)
            self.v[l, start:start + t] = (h @ w["wv"][l].T).view(t, self.nkv, self.hs)
            K = self.k[l, :start + t].repeat_interleave(groups, dim=1)            # (S, nh, hs)
            V = self.v[l, :start + t].repeat_interleave(groups, dim=1)
            att = torch.einsum("thd,shd->hts", q.float(), K.float()) / self.hs ** 0.5 + mask
            o = torch.einsum("hts,shd->thd", att.softmax(-1), V.float()).reshape(t, self.dim).to(x.dtype)
            x = x + o @ w["wo"][l].T
            h = self.rms(x, w["rms_ffn"][l])
            x = x + (torch.nn.functional.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)) @ w["w2"][l].T
        return self.rms(x[-1:], w["rms_final"]) @ w["wcls"].T                    # (1, vocab)


def measure(model, vocab, prompt_tokens, decode_tokens):
    prompt = [(i * 7919 + 1) % vocab for i in range(prompt_tokens)]               # the C# bench's prompt
    t0 = time.perf_counter()
    logits = model.forward(prompt, 0)
    logits.cpu()  # the C# side brings the logits to the host too
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for pos in range(prompt_tokens, prompt_tokens + decode_tokens):
        logits = model.forward([int(logits.argmax())], pos)  # argmax on the host: a sync per token, as ours
    decode = time.perf_counter() - t0
    return prompt_tokens / prefill, decode_tokens / decode


def stories260k(path="data/stories260K/stories260K.bin"):
    raw = open(path, "rb").read()
    dim, hidden, L, nh, nkv, vocab, seq = struct.unpack("<7i", raw[:28])
    shared, vocab, hs = vocab > 0, abs(vocab), dim // nh
    flat = torch.from_numpy(np.frombuffer(raw, dtype="<f4", offset=28).copy()).to(dev)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        t = flat[pos:pos + n].view(*shape)
        pos += n
        return t
    w = {"emb": take(vocab, dim)}
    w["rms_att"] = list(take(L, dim)); w["wq"] = list(take(L, dim, dim)); w["wk"] = list(take(L, nkv * hs, dim))
    w["wv"] = list(take(L, nkv * hs, dim)); w["wo"] = list(take(L, dim, dim)); w["rms_ffn"] = list(take(L, dim))
    w["w1"] = list(take(L, hidden, dim)); w["w2"] = list(take(L, dim, hidden)); w["w3"] = list(take(L, hidden, dim))
    w["rms_final"] = take(dim)
    take(seq, hs // 2); take(seq, hs // 2)
    w["wcls"] = w["emb"] if shared else take(vocab, dim)
    return Llama(dim, hidden, L, nh, nkv, vocab, seq, w), vocab


def tinyllama_shape(dtype):
    dim, hidden, L, nh, nkv, vocab, seq = 2048, 5632, 22, 32, 4, 32000, 2048
    g = torch.Generator().manual_seed(1)
    kvd = dim // nh * nkv

    def mat(r, c):
        return ((torch.rand(r, c, generator=g) - 0.5) * 0.07).to(dtype).to(dev)
    ones = torch.ones(dim, dtype=dtype, device=dev)
    w = {"emb": mat(vocab, dim), "rms_final": ones, "wcls": mat(vocab, dim)}
    for k, (r, c) in {"wq": (dim, dim), "wk": (kvd, dim), "wv": (kvd, dim), "wo": (dim, dim),
                      "w1": (hidden, dim), "w2": (dim, hidden), "w3": (hidden, dim)}.items():
        w[k] = [mat(r, c) for _ in range(L)]
    w["rms_att"] = [ones] * L
    w["rms_ffn"] = [ones] * L
    return Llama(dim, hidden, L, nh, nkv, vocab, seq, w), vocab


m, vocab = stories260k()
# This torch model is the same Llama: greedy from BOS gives the independent numpy reference's tokens.
want = [int(x) for x in open("tests/fixtures/stories260K/greedy200.txt").read().split()[:40]]
got, logits = [], m.forward([1], 0)
for pos in range(1, 41):
    got.append(int(logits.argmax()))
    logits = m.forward([got[-1]], pos)
assert got == want, f"torch Llama disagrees with tests/fixtures/stories260K/greedy200.txt: {got[:10]} vs {want[:10]}"
measure(m, vocab, 64, 32)  # warm-up at the measured shapes, then the best of three, as the C# bench
runs = [measure(m, vocab, 64, 256) for _ in range(3)]
pre, dec = max(r[0] for r in runs), max(r[1] for r in runs)
print(f"torch model=stories260K dtype=float32 device={a.device} threads={a.threads} prefill_tok_s={pre:.1f} decode_tok_s={dec:.1f}", flush=True)
if a.big:
    dtype = torch.bfloat16 if a.bf16 else torch.float16 if a.f16 else torch.float32
    m, vocab = tinyllama_shape(dtype)
    measure(m, vocab, 4, 2)
    pre, dec = measure(m, vocab, 32, 16)
    print(f"torch model=TinyLlama-1.1B-shape dtype={str(dtype).replace('torch.', '')} device={a.device} threads={a.threads} prefill_tok_s={pre:.1f} decode_tok_s={dec:.2f}", flush=True)
