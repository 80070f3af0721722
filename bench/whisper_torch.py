#!/usr/bin/python3
"""The `mt transcribe train` Whisper in plain PyTorch (1.13, /usr/bin/python3): the PyTorch side of
bench/whisper_vs_torch.sh. The model is tests/fixtures/whisper/make_tiny_whisper.py's (written from the Whisper paper
and openai's model.py, independent of the C# code; Hugging Face's key names, weights as a dict of leaf tensors),
made trainable and sized by the arguments (the script passes ours: `ManagedTensor.Bench whisper --print-config`).
The encoder's sinusoidal positions are fixed (not counted, as in ours and Hugging Face's); the output head is tied
to the token embedding. The parameter count is printed for the script to check against ours (and asserted at
main's default sizes).

  --mode encode: the encoder alone, no gradients, on (B, 80, frames) noise; batch 1 by default.
  --mode train:  one step as WhisperTrainer.Step: teacher-forced cross-entropy of T tokens (random ids, the first
                 target ignored), backward, clip_grad_norm_(1.0), AdamW (lr 1e-3, betas 0.9/0.98, decay 0.1 on
                 weights of rank >= 2); batch 8.
Attention is written out (softmax(q k^T / sqrt(hs)) v): torch 1.13 has no fused scaled_dot_product_attention.
Each iteration is timed alone; the figure is the median after the warm-up iterations.
"""
import argparse, math, resource, statistics, sys, time
import torch
import torch.nn.functional as F

w = {}


def build(d, layers, ffn, mels, src, tgt, vocab):
    def rand(*shape, std):
        return (torch.randn(*shape) * std).requires_grad_()

    def linear(name, out_f, in_f, bias=True):
        w[name + ".weight"] = rand(out_f, in_f, std=1 / math.sqrt(in_f))
        if bias:
            w[name + ".bias"] = rand(out_f, std=0.05)

    def layer_norm(name):
        w[name + ".weight"] = torch.ones(d, requires_grad=True)
        w[name + ".bias"] = torch.zeros(d, requires_grad=True)

    def attention(name):
        linear(name + ".q_proj", d, d)
        linear(name + ".k_proj", d, d, bias=False)
        linear(name + ".v_proj", d, d)
        linear(name + ".out_proj", d, d)

    w["model.encoder.conv1.weight"] = rand(d, mels, 3, std=1 / math.sqrt(mels * 3))
    w["model.encoder.conv1.bias"] = rand(d, std=0.05)
    w["model.encoder.conv2.weight"] = rand(d, d, 3, std=1 / math.sqrt(d * 3))
    w["model.encoder.conv2.bias"] = rand(d, std=0.05)
    for i in range(layers):
        p = f"model.encoder.layers.{i}."
        layer_norm(p + "self_attn_layer_norm")
        attention(p + "self_attn")
        layer_norm(p + "final_layer_norm")
        linear(p + "fc1", ffn, d)
        linear(p + "fc2", d, ffn)
    layer_norm("model.encoder.layer_norm")
    w["model.decoder.embed_tokens.weight"] = rand(vocab, d, std=0.02)
    w["model.decoder.embed_positions.weight"] = rand(tgt, d, std=0.02)
    for i in range(layers):
        p = f"model.decoder.layers.{i}."
        layer_norm(p + "self_attn_layer_norm")
        attention(p + "self_attn")
        layer_norm(p + "encoder_attn_layer_norm")
        attention(p + "encoder_attn")
        layer_norm(p + "final_layer_norm")
        linear(p + "fc1", ffn, d)
        linear(p + "fc2", d, ffn)
    layer_norm("model.decoder.layer_norm")


def sinusoids(length, channels, max_timescale=10000):  # openai's sinusoids(): fixed, not trained
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1).float()


def lin(x, name):
    return F.linear(x, w[name + ".weight"], w.get(name + ".bias"))


def ln(x, name):
    return F.layer_norm(x, (x.shape[-1],), w[name + ".weight"], w[name + ".bias"], eps=1e-5)


def mha(x, kv, name, heads, causal):
    b, t, d = x.shape
    s = kv.shape[1]
    hs = d // heads
    q = lin(x, name + ".q_proj").view(b, t, heads, hs).transpose(1, 2)
    k = lin(kv, name + ".k_proj").view(b, s, heads, hs).transpose(1, 2)
    v = lin(kv, name + ".v_proj").view(b, s, heads, hs).transpose(1, 2)
    att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
    if causal:
        att = att.masked_fill(torch.ones(t, s, dtype=torch.bool).triu(1), float("-inf"))
    y = att.softmax(-1) @ v
    return lin(y.transpose(1, 2).reshape(b, t, d), name + ".out_proj")


def mlp(x, p):
    return lin(F.gelu(lin(x, p + "fc1")), p + "fc2")


def encoder(mel, positions, layers, heads):
    x = F.gelu(F.conv1d(mel, w["model.encoder.conv1.weight"], w["model.encoder.conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, w["model.encoder.conv2.weight"], w["model.encoder.conv2.bias"], stride=2, padding=1))
    x = x.transpose(1, 2) + positions[:x.shape[2]]
    for i in range(layers):
        p = f"model.encoder.layers.{i}."
        h = ln(x, p + "self_attn_layer_norm")
        x = x + mha(h, h, p + "self_attn", heads, causal=False)
        x = x + mlp(ln(x, p + "final_layer_norm"), p)
    return ln(x, "model.encoder.layer_norm")


def decoder(tokens, audio, layers, heads):
    t = tokens.shape[1]
    x = w["model.decoder.embed_tokens.weight"][tokens] + w["model.decoder.embed_positions.weight"][:t]
    for i in range(layers):
        p = f"model.decoder.layers.{i}."
        h = ln(x, p + "self_attn_layer_norm")
        x = x + mha(h, h, p + "self_attn", heads, causal=True)
        x = x + mha(ln(x, p + "encoder_attn_layer_norm"), audio, p + "encoder_attn", heads, causal=False)
        x = x + mlp(ln(x, p + "final_layer_norm"), p)
    x = ln(x, "model.decoder.layer_norm")
    return x @ w["model.decoder.embed_tokens.weight"].T  # proj_out, tied


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("encode", "train"), default="encode")
    ap.add_argument("--batch", type=int, default=-1)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--d-model", type=int, default=192)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--frames", type=int, default=800)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=51864)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    batch = a.batch if a.batch > 0 else (1 if a.mode == "encode" else 8)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    build(a.d_model, a.layers, 4 * a.d_model, 80, a.frames // 2, a.max_tokens, a.vocab)
    positions = sinusoids(a.frames // 2, a.d_model)
    params = sum(p.numel() for p in w.values())
    sizes = (a.d_model, a.layers, a.heads, a.frames, a.max_tokens, a.vocab)
    if sizes == (192, 3, 4, 800, 64, 51864):  # main's WhisperTrainConfig: ours has 13,241,280 (the script compares any size)
        assert params == 13_241_280, f"the default model has {params} parameters, ours 13,241,280"
    mel = torch.randn(batch, 80, a.frames)
    loss = float("nan")
    if a.mode == "encode":
        def step():
            with torch.no_grad():
                encoder(mel, positions, a.layers, a.heads).numpy()
    else:
        ids = torch.randint(0, a.vocab, (batch, a.tokens + 1))
        x, y = ids[:, :-1], ids[:, 1:].clone()
        y[:, 0] = -100
        decay = [p for p in w.values() if p.dim() >= 2]
        rest = [p for p in w.values() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.98), eps=1e-8)

        def step():
            nonlocal loss
            opt.zero_grad(set_to_none=True)
            logits = decoder(x, encoder(mel, positions, a.layers, a.heads), a.layers, a.heads)
            l = F.cross_entropy(logits.reshape(-1, a.vocab), y.reshape(-1), ignore_index=-100)
            loss = l.item()
            l.backward()
            torch.nn.utils.clip_grad_norm_(w.values(), 1.0)
            opt.step()

    times, cpu0 = [], 0.0
    for it in range(a.iters):
        if it == a.warmup:
            cpu0 = time.process_time()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
        print(f"whisper {a.mode} iteration {it + 1}/{a.iters}: {times[-1]:.0f} ms", file=sys.stderr)
    timed = a.iters - a.warmup
    ms = statistics.median(times[a.warmup:])
    cpu_ms = (time.process_time() - cpu0) * 1000 / timed
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch mode={a.mode} batch={batch} tokens={a.tokens} d_model={a.d_model} layers={a.layers} heads={a.heads} frames={a.frames} vocab={a.vocab} "
          f"threads={torch.get_num_threads()} iters={timed} params={params} ms_per_iter={ms:.1f} loss={loss:.4f} peak_rss_mb={rss:.0f} cpu_ms_per_iter={cpu_ms:.1f}")


if __name__ == "__main__":
    main()
