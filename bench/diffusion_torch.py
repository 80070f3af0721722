#!/usr/bin/python3
"""The diffusion denoisers of `mt diffuse train` in plain PyTorch (1.13, /usr/bin/python3): the PyTorch side of
bench/diffusion_vs_torch.sh. The U-Net is tests/fixtures/diffusion/make_unet_fixture.py's (written from DDPM's
description, not from the C# code) and the DiT block make_diffusion_fixtures.py's (from facebookresearch/DiT
models.py), here at the default sizes of src/Models/Diffusion/DiffusionConfig.cs and with DiT's patch embedding,
sine-cosine positions and final adaLN layer around the blocks; weights under the C# module names, as a dict of
leaf tensors like the fixtures' (random, not zero-initialized: the arithmetic is the same). The parameter count is
asserted equal to ours (printed for the script to compare as well).

  --mode train:  one training step as DiffusionTrainer.TrainStep: x0 uniform in [-1, 1], t uniform in 0..999, labels
                 with 10% dropped to the null class, eps ~ N(0, I), x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, forward,
                 MSE against eps, backward, clip_grad_norm_(1.0), AdamW (lr 3e-4, no decay), EMA update (0.999); batch 64.
  --mode sample: one guided denoiser call of `mt diffuse sample` (cfg 3: the batch twice, labels and null class)
                 and the DDIM update at t = 500 -> 450, no gradients; batch = 20 images (40 rows).
Each iteration is timed alone; the figure is the median after the warm-up iterations.
"""
import argparse, math, resource, statistics, sys, time
import torch
import torch.nn.functional as F

CLASSES, SIZE, CHANNELS, STEPS, GROUPS = 10, 32, 1, 1000, 8
UNET = dict(ch=32, mults=(1, 2, 2), res_blocks=1, heads=4)
DIT = dict(patch=4, hidden=128, depth=6, heads=4)
EXPECTED_PARAMS = {"unet": 1_063_905, "dit": 1_869_072}  # ours, ManagedTensor.Bench diffusion --arch A
P = {}  # name -> leaf tensor


def param(name, *shape, scale=None):
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    s = scale if scale is not None else 1 / math.sqrt(fan_in)
    P[name] = (s * torch.randn(*shape)).requires_grad_()


def conv(name, cin, cout, k):
    param(name + ".weight", cout, cin, k, k)
    param(name + ".bias", cout, scale=0.1)


def linear(name, fin, fout):
    param(name + ".weight", fout, fin)
    param(name + ".bias", fout, scale=0.1)


def norm(name, c):
    P[name + ".weight"] = torch.ones(c).requires_grad_()
    P[name + ".bias"] = torch.zeros(c).requires_grad_()


def w(name):
    return P[name]


def lin(x, name):
    return F.linear(x, w(name + ".weight"), w(name + ".bias"))


def sinusoids(t, dim):  # [cos(t f_i)..., sin(t f_i)...], f_i = 10000^(-i/half), in float64 then float32
    half = dim // 2
    f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    arg = t.double()[:, None] * f[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1).float()


def embed(t, labels, freq, drop):  # TimestepEmbedding(MLP of sinusoids) + ClassEmbedding (null row = CLASSES)
    e = lin(F.silu(lin(sinusoids(t, freq), "time_embed.mlp.0" if "time_embed.mlp.0.weight" in P else "t_embedder.mlp.0")),
            "time_embed.mlp.2" if "time_embed.mlp.2.weight" in P else "t_embedder.mlp.2")
    if drop:
        labels = torch.where(torch.rand(labels.shape) < 0.1, torch.full_like(labels, CLASSES), labels)
    table = w("class_embed.embedding_table.weight") if "class_embed.embedding_table.weight" in P else w("y_embedder.embedding_table.weight")
    return e + table[labels]


# ---- U-Net (make_unet_fixture.py at the default sizes) ----
def resblock(name, cin, cout, emb):
    norm(name + ".norm1", cin)
    conv(name + ".conv1", cin, cout, 3)
    linear(name + ".emb_proj", emb, cout)
    norm(name + ".norm2", cout)
    conv(name + ".conv2", cout, cout, 3)
    if cin != cout:
        conv(name + ".skip", cin, cout, 1)
    return ("res", name, cin != cout)


def build_unet():
    ch, mults, nres = UNET["ch"], UNET["mults"], UNET["res_blocks"]
    emb = 4 * ch
    linear("time_embed.mlp.0", ch, emb)
    linear("time_embed.mlp.2", emb, emb)
    param("class_embed.embedding_table.weight", CLASSES + 1, emb, scale=0.02)
    conv("conv_in", CHANNELS, ch, 3)
    down, up, skips, cur = [], [], [ch], ch
    for level, m in enumerate(mults):
        for _ in range(nres):
            down.append(resblock(f"down.{len(down)}", cur, ch * m, emb))
            cur = ch * m
            skips.append(cur)
        if level < len(mults) - 1:
            conv(f"down.{len(down)}", cur, cur, 3)
            down.append(("downsample", f"down.{len(down)}", None))
            skips.append(cur)
    mid1 = resblock("mid.0", cur, cur, emb)
    norm("mid.1.norm", cur)
    linear("mid.1.attn.qkv", cur, 3 * cur)
    linear("mid.1.attn.proj", cur, cur)
    mid2 = resblock("mid.2", cur, cur, emb)
    for level in reversed(range(len(mults))):
        for _ in range(nres + 1):
            up.append(resblock(f"up.{len(up)}", cur + skips.pop(), ch * mults[level], emb))
            cur = ch * mults[level]
        if level > 0:
            conv(f"up.{len(up)}", cur, cur, 3)
            up.append(("upsample", f"up.{len(up)}", None))
    norm("norm_out", cur)
    conv("conv_out", cur, CHANNELS, 3)

    def run_conv(name, x, stride=1):
        k = w(name + ".weight").shape[-1]
        return F.conv2d(x, w(name + ".weight"), w(name + ".bias"), stride=stride, padding=k // 2)

    def gn(name, x):
        return F.group_norm(x, GROUPS, w(name + ".weight"), w(name + ".bias"), eps=1e-5)

    def run_res(block, x, e):
        _, name, has_skip = block
        h = run_conv(name + ".conv1", F.silu(gn(name + ".norm1", x)))
        h = h + lin(F.silu(e), name + ".emb_proj")[:, :, None, None]
        h = run_conv(name + ".conv2", F.silu(gn(name + ".norm2", h)))
        return (run_conv(name + ".skip", x) if has_skip else x) + h

    def run_attn(x):
        b, c, hh, ww = x.shape
        heads = UNET["heads"]
        tok = gn("mid.1.norm", x).reshape(b, c, hh * ww).transpose(1, 2)                  # (B, T, C)
        q, k, v = lin(tok, "mid.1.attn.qkv").reshape(b, hh * ww, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
        o = lin((a @ v).transpose(1, 2).reshape(b, hh * ww, c), "mid.1.attn.proj")
        return x + o.transpose(1, 2).reshape(b, c, hh, ww)

    def forward(x, t, labels, drop=False):
        e = embed(t, labels, UNET["ch"], drop)
        h = run_conv("conv_in", x)
        stack = [h]
        for block in down:
            h = run_res(block, h, e) if block[0] == "res" else run_conv(block[1], h, stride=2)
            stack.append(h)
        h = run_res(mid2, run_attn(run_res(mid1, h, e)), e)
        for block in up:
            if block[0] == "res":
                h = run_res(block, torch.cat([h, stack.pop()], dim=1), e)
            else:
                h = run_conv(block[1], F.interpolate(h, scale_factor=2, mode="nearest"))
        return run_conv("conv_out", F.silu(gn("norm_out", h)))

    return forward


# ---- DiT (make_diffusion_fixtures.py's block, DiT's embedders and final layer) ----
def sincos_2d(dim, grid):  # MAE's fixed 2-D position embedding, as DiT.SinCos2d: [sin, cos](col), [sin, cos](row)
    q = dim // 4
    wq = torch.pow(10000.0, -torch.arange(q, dtype=torch.float64) / q)
    r, c = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")
    r, c = r.reshape(-1, 1) * wq, c.reshape(-1, 1) * wq
    return torch.cat([torch.sin(c), torch.cos(c), torch.sin(r), torch.cos(r)], dim=1).float()[None]  # (1, T, D)


def build_dit():
    d, p, depth, heads = DIT["hidden"], DIT["patch"], DIT["depth"], DIT["heads"]
    grid = SIZE // p
    linear("x_embedder", p * p * CHANNELS, d)
    linear("t_embedder.mlp.0", 256, d)
    linear("t_embedder.mlp.2", d, d)
    param("y_embedder.embedding_table.weight", CLASSES + 1, d, scale=0.02)
    for i in range(depth):
        b = f"blocks.{i}."
        linear(b + "attn.qkv", d, 3 * d)
        linear(b + "attn.proj", d, d)
        linear(b + "mlp.fc1", d, 4 * d)
        linear(b + "mlp.fc2", 4 * d, d)
        linear(b + "adaLN_modulation.1", d, 6 * d)
    linear("final_layer.adaLN_modulation.1", d, 2 * d)
    linear("final_layer.linear", d, p * p * CHANNELS)
    pos = sincos_2d(d, grid)

    def modulate(x, shift, scale):
        return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)

    def attention(x, b):
        n, t, _ = x.shape
        q, k, v = lin(x, b + "attn.qkv").reshape(n, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(dim=-1)
        return lin((a @ v).transpose(1, 2).reshape(n, t, d), b + "attn.proj")

    def block(x, c, b):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = lin(F.silu(c), b + "adaLN_modulation.1").chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * attention(modulate(F.layer_norm(x, (d,), eps=1e-6), shift_msa, scale_msa), b)
        h = F.gelu(lin(modulate(F.layer_norm(x, (d,), eps=1e-6), shift_mlp, scale_mlp), b + "mlp.fc1"), approximate="tanh")
        return x + gate_mlp.unsqueeze(1) * lin(h, b + "mlp.fc2")

    def forward(x, t, labels, drop=False):
        n = x.shape[0]
        tokens = x.reshape(n, CHANNELS, grid, p, grid, p).permute(0, 2, 4, 3, 5, 1).reshape(n, grid * grid, p * p * CHANNELS)
        h = lin(tokens, "x_embedder") + pos
        c = embed(t, labels, 256, drop)
        for i in range(depth):
            h = block(h, c, f"blocks.{i}.")
        shift, scale = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, dim=1)
        h = lin(modulate(F.layer_norm(h, (d,), eps=1e-6), shift, scale), "final_layer.linear")       # (N, T, p*p*C)
        return h.reshape(n, grid, grid, p, p, CHANNELS).permute(0, 5, 1, 3, 2, 4).reshape(n, CHANNELS, SIZE, SIZE)

    return forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=("unet", "dit"), default="unet")
    ap.add_argument("--mode", choices=("train", "sample"), default="train")
    ap.add_argument("--batch", type=int, default=-1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    batch = args.batch if args.batch > 0 else (64 if args.mode == "train" else 20)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    forward = build_unet() if args.arch == "unet" else build_dit()
    params = sum(p.numel() for p in P.values())
    assert params == EXPECTED_PARAMS[args.arch], f"{args.arch} has {params} parameters, ours {EXPECTED_PARAMS[args.arch]}"
    betas = torch.linspace(1e-4, 0.02, STEPS, dtype=torch.float64)  # DDPM's linear schedule
    abar = torch.cumprod(1 - betas, 0)
    shape = (batch, CHANNELS, SIZE, SIZE)
    loss = float("nan")
    if args.mode == "train":
        opt = torch.optim.AdamW(list(P.values()), lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        ema = {k: v.detach().clone() for k, v in P.items()}
        updates = 0

        def step():
            nonlocal loss, updates
            t = torch.randint(0, STEPS, (batch,))
            labels = torch.randint(0, CLASSES, (batch,))
            x0 = torch.rand(shape) * 2 - 1
            eps = torch.randn(shape)
            a = abar[t].float().view(-1, 1, 1, 1)
            xt = x0 * a.sqrt() + eps * (1 - a).sqrt()
            l = F.mse_loss(forward(xt, t, labels, drop=True), eps)
            l.backward()
            loss = l.item()
            torch.nn.utils.clip_grad_norm_(P.values(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            decay = min(0.999, (1 + updates) / (10 + updates))  # Optim.Ema's warm-up
            with torch.no_grad():
                for k, p in P.items():
                    ema[k].mul_(decay).add_(p, alpha=1 - decay)
            updates += 1
    else:
        labels = torch.arange(batch) % CLASSES
        x = torch.randn(shape)
        t, prev, cfg = 500, 450, 3.0

        def step():
            with torch.no_grad():
                both = forward(torch.cat([x, x]), torch.full((2 * batch,), float(t)), torch.cat([labels, torch.full((batch,), CLASSES)]))
                out = both[batch:] + (both[:batch] - both[batch:]) * cfg
                a, ap_ = abar[t].item(), abar[prev].item()
                x0 = ((x - out * math.sqrt(1 - a)) / math.sqrt(a)).clamp(-1, 1)
                e = (x - x0 * math.sqrt(a)) / math.sqrt(1 - a)
                (x0 * math.sqrt(ap_) + e * math.sqrt(1 - ap_)).numpy()

    times, cpu0 = [], 0.0
    for it in range(args.iters):
        if it == args.warmup:
            cpu0 = time.process_time()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
        print(f"diffusion {args.arch} {args.mode} iteration {it + 1}/{args.iters}: {times[-1]:.0f} ms", file=sys.stderr)
    timed = args.iters - args.warmup
    ms = statistics.median(times[args.warmup:])
    cpu_ms = (time.process_time() - cpu0) * 1000 / timed
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch arch={args.arch} mode={args.mode} batch={batch} threads={torch.get_num_threads()} iters={timed} params={params} "
          f"ms_per_iter={ms:.1f} images_per_s={batch * 1000 / ms:.2f} loss={loss:.4f} peak_rss_mb={rss:.0f} cpu_ms_per_iter={cpu_ms:.1f}")


if __name__ == "__main__":
    main()
