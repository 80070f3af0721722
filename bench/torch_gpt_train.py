"""nanoGPT's CPU recipe for tiny Shakespeare (character level) in PyTorch: the reference the GPT trainer is
timed against. The model is nanoGPT's model.py architecture (pre-norm blocks, exact GELU, tied lm_head,
no biases, dropout 0), trained with AdamW (decay on 2-D weights only), warm-up + cosine learning rate
and gradient clipping at 1.0, as train.py.

Prints one line: "torch iters=N ms_per_iter=... tokens_per_s=... final_loss=... peak_rss_mb=... [best_val=...] [wall_s=...]".
Usage: python3 bench/torch_gpt_train.py [--threads 2] [--iters 200] [--eval] [--preset shakespeare-char]
[--shape big] [--device cuda]  (--shape big: the CPU recipe at 6 layers, 6 heads, 384 wide, block 256, batch 8,
dropout 0, the second shape of bench/gpt_train_vs_torch.sh; --eval: nanoGPT's eval every 250 steps over the preset's eval batches per split,
reporting the best val loss; --preset shakespeare-char: nanoGPT's GPU recipe, 6 layers, 6 heads, 384
wide, block 256, batch 64, dropout 0.2, 5000 iterations, 200 eval batches; fp32, eager, TF32 off)"""
import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--iters", type=int, default=200)
p.add_argument("--eval", action="store_true")
p.add_argument("--data", default="data/tinyshakespeare.txt")
p.add_argument("--preset", default="shakespeare-char-cpu", choices=["shakespeare-char-cpu", "shakespeare-char"])
p.add_argument("--device", default="cpu")
p.add_argument("--seed", type=int, default=1337)
p.add_argument("--shape", default="small", choices=["small", "big"])
p.add_argument("--sdpa", action="store_true", help="F.scaled_dot_product_attention (torch >= 2.0) instead of nanoGPT's slow path")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device(a.device)

if a.preset == "shakespeare-char":
    block, batch, n_layer, n_head, n_embd, dropout, eval_iters = 256, 64, 6, 6, 384, 0.2, 200
    max_iters, lr, min_lr, warmup, decay = 5000, 1e-3, 1e-4, 100, 5000
else:
    block, batch, n_layer, n_head, n_embd, dropout, eval_iters = 64, 12, 4, 4, 128, 0.0, 20
    max_iters, lr, min_lr, warmup, decay = 2000, 1e-3, 1e-4, 100, 2000
    if a.shape == "big":
        block, batch, n_layer, n_head, n_embd = 256, 8, 6, 6, 384

text = open(a.data, encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data))
train, val = data[:n], data[n:]


def get_batch(split):
    d = train if split == "train" else val
    ix = torch.randint(len(d) - block, (batch,))
    return torch.stack([d[i:i + block] for i in ix]).to(dev), torch.stack([d[i + 1:i + 1 + block] for i in ix]).to(dev)


class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm with an optional bias (torch 1.13's nn.LayerNorm cannot drop only the bias)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.register_buffer("mask", torch.tril(torch.ones(block, block)).view(1, 1, block, block))
        self.attn_drop = nn.Dropout(dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(n_embd, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        if a.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout if self.training else 0, is_causal=True)
            return self.drop(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        # torch 1.13 (Debian's) has no scaled_dot_product_attention: nanoGPT's "slow attention" path
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        y = self.attn_drop(F.softmax(att, dim=-1)) @ v
        return self.drop(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = LayerNorm()
        self.attn = Attention()
        self.ln_2 = LayerNorm()
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd, bias=False), nn.GELU(), nn.Linear(4 * n_embd, n_embd, bias=False), nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block() for _ in range(n_layer))
        self.ln_f = LayerNorm()
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, prm in self.named_parameters():
            if prm.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("2.weight") or name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(prm, 0.0, std)

    def forward(self, idx, targets):
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device)))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


model = GPT(len(chars)).to(dev)
decay_params = [p for p in model.parameters() if p.dim() >= 2]
other_params = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay_params, "weight_decay": 0.1}, {"params": other_params, "weight_decay": 0.0}],
                        lr=lr, betas=(0.9, 0.99))


def get_lr(it):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


@torch.no_grad()
def estimate(split):
    model.eval()
    losses = [model(*get_batch(split)).item() for _ in range(eval_iters)]
    model.train()
    return sum(losses) / len(losses)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


times, best_val, loss = [], float("inf"), None
wall0 = time.perf_counter()
for it in range(a.iters):
    if a.eval and it % 250 == 0 and it > 0:  # train.py's schedule: every eval_interval steps, and at the end
        best_val = min(best_val, estimate("val"))
    for g in opt.param_groups:
        g["lr"] = get_lr(it)
    t0 = time.perf_counter()
    x, y = get_batch("train")
    loss = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if it % 10 == 0:
        loss.item()  # a host sync every 10 steps, as nanoGPT's logging does
    sync()
    times.append(time.perf_counter() - t0)
if a.eval:
    best_val = min(best_val, estimate("val"))

ms = statistics.median(times[min(10, len(times) // 2):]) * 1000
line = f"torch iters={a.iters} ms_per_iter={ms:.2f} tokens_per_s={batch * block / ms * 1000:.0f} final_loss={loss.item():.4f}"
line += f" peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"  # VmHWM, as the other runners
line += f" best_val={best_val:.4f}" if a.eval else ""
if dev.type == "cuda":
    line += f" peak_mem_mb={torch.cuda.max_memory_allocated() / 2**20:.0f}"
print(line + f" wall_s={time.perf_counter() - wall0:.1f}")
