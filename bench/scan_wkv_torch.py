"""The naive PyTorch CPU baselines for bench/scan_wkv_vs_torch.sh, float32, 2 threads: mamba's selective_scan_ref
(the sequential loop that the Mamba paper's 20-40x speed-up is measured against) and RWKV-6's reference loop
written per token with tensors (as tests/fixtures/ssm/make_scan_wkv_fixtures.py). Forward, and forward + backward
(autograd through the loop). Prints "op shape torch fwd-ms fwdbwd-ms", best of 5 (2 with --quick), the shapes of
bench/ScanWkvRunner.cs.
--device cuda: the same loops on the GPU (synchronized around each timing), for `mt bench scan-wkv --device cuda`;
--big adds its Mamba-130M / RWKV-6-sized layer (B8 L2048 D1536 N16; B8 T2048 H12 K64)."""
import sys
import time

import torch

torch.set_num_threads(2)
quick = "--quick" in sys.argv
reps = 2 if quick else 5
device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
big = "--big" in sys.argv


def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def selective_scan_ref(u, delta, A, B, C, D):
    # u, delta (B, D, L); A (D, N); B, C (B, N, L); D (D): mamba_ssm's reference, without z and delta_bias.
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    return torch.stack(ys, dim=2) + u * D[:, None]


def wkv6_ref(r, k, v, logw, u):
    b, t, h, n = r.shape
    w = torch.exp(logw)
    state = r.new_zeros((b, h, n, n))
    out = []
    for i in range(t):
        x = v[:, i, :, :, None] * k[:, i, :, None, :]
        out.append(((u[None, :, None, :] * x + state) * r[:, i, :, None, :]).sum(-1))
        state = state * w[:, i, :, None, :] + x
    return torch.stack(out, 1)


def best(fn):
    end = time.perf_counter() + 1
    while time.perf_counter() < end:
        fn()
    sync()
    times = []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if time.perf_counter() - t0 >= 0.2:
                break
        sync()
        times.append((time.perf_counter() - t0) / n)
    return min(times)


for b, l, d, n in [(12, 64, 256, 16), (4, 1024, 256, 16)] + ([(8, 2048, 1536, 16)] if big else []):
    g = torch.Generator().manual_seed(1)
    ins = [torch.randn(b, d, l, generator=g), torch.rand(b, d, l, generator=g) * 0.1, -torch.rand(d, n, generator=g) * 1.9 - 0.1,
           torch.randn(b, n, l, generator=g), torch.randn(b, n, l, generator=g), torch.randn(d, generator=g)]
    ins = [x.to(device) for x in ins]
    leaves = [t.clone().requires_grad_() for t in ins]
    dy = torch.randn(b, d, l, generator=g).to(device)

    def fwd():
        with torch.no_grad():
            selective_scan_ref(*ins)

    def both():
        (selective_scan_ref(*leaves) * dy).sum().backward()

    print(f"scan B{b}xL{l}xD{d}xN{n} torch {best(fwd) * 1e3:.3f} {best(both) * 1e3:.3f}", flush=True)

for b, t, h, k in [(12, 64, 4, 32), (4, 1024, 4, 64)] + ([(8, 2048, 12, 64)] if big else []):
    g = torch.Generator().manual_seed(2)
    ins = [torch.randn(b, t, h, k, generator=g), torch.randn(b, t, h, k, generator=g) * 0.1, torch.randn(b, t, h, k, generator=g),
           -torch.rand(b, t, h, k, generator=g) * 0.99 - 0.01, torch.randn(h, k, generator=g)]
    ins = [x.to(device) for x in ins]
    leaves = [x.clone().requires_grad_() for x in ins]
    dy = torch.randn(b, t, h, k, generator=g).to(device)

    def fwd():
        with torch.no_grad():
            wkv6_ref(*ins)

    def both():
        (wkv6_ref(*leaves) * dy).sum().backward()

    print(f"wkv6 B{b}xT{t}xH{h}xK{k} torch {best(fwd) * 1e3:.3f} {best(both) * 1e3:.3f}", flush=True)
