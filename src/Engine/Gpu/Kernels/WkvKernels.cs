using System.Numerics;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Sizes, schedule and element offsets of one WKV launch (<see cref="WkvKernels"/>).</summary>
internal struct WkvArgs
{
    public int B, T, H, K, Chunk, Chunks;
    /// <summary>Forward pass: <see cref="ScanKernels.Local"/>, <see cref="ScanKernels.Output"/> or <see cref="ScanKernels.Sequential"/>.</summary>
    public int Mode;
    public int R, Kk, V, W, U, Y, States, Gy, Gr, Gk, Gv, Gw;
}

/// <summary>
/// RWKV-6's WKV on the GPU (op <see cref="WkvOps.Wkv6"/>; math and schedules of <see cref="Cpu.CpuWkv"/>). A group of
/// K threads runs one head (b, h) and keeps its K x K state in shared memory (16 KB for K = 64 in F32).
/// Forward: thread j owns column j of S (the value channel), as in RWKV's own CUDA kernel, so
///   y_t,j = Σ_i r_t,i (S[i, j] + u_i k_t,i v_t,j),   S[i, j] ← w_t,i S[i, j] + k_t,i v_t,j
/// needs no communication; each step the threads stage r, k, w = exp(logw) and u k in shared memory (one
/// exp per channel, not per element; double-buffered, one barrier per step). Chunks run as on the CPU:
/// local scans from zero (one group per (b, chunk, h)), a carry over chunk starts (one thread per state element),
/// then every chunk from its true start.
/// Backward, two kernels that need no (T, K, K) history:
/// - <see cref="GrKernel{T}"/>: one group per (b, chunk, h) reruns the chunk from its saved start with thread i
///   owning row i: gr_t,i = u_i k_t,i (gy_t · v_t) + A_t,i, A_t,i = Σ_j gy_t,j S_{t-1}[i, j] (A goes to glogw's slot).
/// - <see cref="GradKernel{T}"/>: one group per (b, h) walks t from last to first with G = dL/dS_t in shared
///   memory: gk (row sums of G), gv (column sums), gu, and glogw without S_{t-1}: with Q_t,i = Σ_j G_t[i, j] S_t[i, j]
///   and w_t S_{t-1} = S_t - k_t v_tᵀ,
///     glogw_t,i = w_t,i Σ_j G_t[i, j] S_{t-1}[i, j] = Q_t,i - k_t,i (G_t v_t)_i,     Q_{t-1,i} = glogw_t,i + r_t,i A_t,i
///   (G_{t-1} = diag(w_t) G_t + r_t gy_tᵀ), starting from Q = 0 after the last step.
/// gu sums over the batch: one partial per (b, h), added in order by <see cref="PartSumKernels"/>.
/// </summary>
internal static class WkvKernels
{
    private const int SharedLimit = 48 * 1024;

    // ---- kernels ----

    public static void ForwardKernel<T>(ArrayView<T> r, ArrayView<T> k, ArrayView<T> v, ArrayView<T> logw, ArrayView<T> u,
        ArrayView<T> y, ArrayView<T> states, ArrayView<T> decay, WkvArgs s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int j = Group.IdxX, groups = Grid.DimX, first = Grid.IdxX, kn = s.K, kk = kn * kn, mode = s.Mode;
        var shared = SharedMemory.GetDynamic<T>();
        var st = shared.SubView(0, kk);                                                 // S[i, j] at i K + j
        var step = shared.SubView(kk, 8 * kn);                                          // r, k, w, u k per channel, double-buffered
        int segments = mode == ScanKernels.Sequential ? 1 : s.Chunks, parity = 0;
        for (int item = first; item < s.B * segments * s.H; item += groups)
        {
            int h = item % s.H, seg = item / s.H % segments, b = item / s.H / segments;
            int c0 = mode == ScanKernels.Sequential ? 0 : seg, c1 = mode == ScanKernels.Sequential ? s.Chunks : seg + 1;
            int start = s.States + ((b * s.Chunks + c0) * s.H + h) * kk;
            for (int i = 0; i < kn; i++) st[i * kn + j] = mode == ScanKernels.Output ? states[start + i * kn + j] : T.Zero;
            T sumLogw = T.Zero;
            for (int c = c0; c < c1; c++)
            {
                if (mode == ScanKernels.Sequential)
                    for (int i = 0; i < kn; i++) states[s.States + ((b * s.Chunks + c) * s.H + h) * kk + i * kn + j] = st[i * kn + j];
                int t1 = Math.Min(s.T, (c + 1) * s.Chunk);
                for (int t = c * s.Chunk; t < t1; t++)
                {
                    int o = ((b * s.T + t) * s.H + h) * kn, buf = parity * 4 * kn;
                    T kj = k[s.Kk + o + j], lw = logw[s.W + o + j];
                    step[buf + j] = r[s.R + o + j];
                    step[buf + kn + j] = kj;
                    step[buf + 2 * kn + j] = T.Exp(lw);
                    step[buf + 3 * kn + j] = u[s.U + h * kn + j] * kj;
                    sumLogw += lw;
                    Group.Barrier();
                    T vj = v[s.V + o + j], acc = T.Zero;
                    for (int i = 0; i < kn; i++)
                    {
                        T sij = st[i * kn + j];
                        acc += step[buf + i] * (sij + step[buf + 3 * kn + i] * vj);
                        st[i * kn + j] = step[buf + 2 * kn + i] * sij + step[buf + kn + i] * vj;
                    }
                    if (mode != ScanKernels.Local) y[s.Y + o + j] = acc;
                    parity ^= 1;
                }
            }
            if (mode == ScanKernels.Local)
            {
                decay[((b * s.Chunks + c0) * s.H + h) * kn + j] = T.Exp(sumLogw);     // Π w over the chunk, key channel j
                if (c0 + 1 < s.Chunks)
                    for (int i = 0; i < kn; i++) states[s.States + ((b * s.Chunks + c0 + 1) * s.H + h) * kk + i * kn + j] = st[i * kn + j];
            }
        }
    }

    /// <summary>S_start(c) += diag(P(c - 1)) S_start(c - 1), S_start(0) = 0: one thread per state element (b, h, i, j), chunks in order.</summary>
    public static void CarryKernel<T>(ArrayView<T> states, ArrayView<T> decay, WkvArgs s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX, kk = s.K * s.K, perChunk = s.H * kk;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < s.B * perChunk; e += step)
        {
            int b = e / perChunk, rem = e - b * perChunk, h = rem / kk, i = rem / s.K % s.K;
            int at = s.States + b * s.Chunks * perChunk + rem;
            states[at] = T.Zero;
            for (int c = 1; c < s.Chunks; c++)
                states[at + c * perChunk] += decay[((b * s.Chunks + c - 1) * s.H + h) * s.K + i] * states[at + (c - 1) * perChunk];
        }
    }

    /// <summary>gr and A (into glogw's slot), per (b, chunk, h) from the chunk's saved start; thread i owns row i of S (stored transposed).</summary>
    public static void GrKernel<T>(ArrayView<T> gy, ArrayView<T> k, ArrayView<T> v, ArrayView<T> logw, ArrayView<T> u, ArrayView<T> states,
        ArrayView<T> gr, ArrayView<T> gw, WkvArgs s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = Group.IdxX, groups = Grid.DimX, first = Grid.IdxX, kn = s.K, kk = kn * kn, parity = 0;
        var shared = SharedMemory.GetDynamic<T>();
        var st = shared.SubView(0, kk);                                                 // S[i, j] at j K + i
        var step = shared.SubView(kk, 4 * kn);                                          // gy, v, double-buffered
        for (int item = first; item < s.B * s.Chunks * s.H; item += groups)
        {
            int h = item % s.H, c = item / s.H % s.Chunks, b = item / s.H / s.Chunks;
            int start = s.States + ((b * s.Chunks + c) * s.H + h) * kk;
            for (int j = 0; j < kn; j++) st[j * kn + i] = states[start + i * kn + j];
            T ui = u[s.U + h * kn + i];
            int t1 = Math.Min(s.T, (c + 1) * s.Chunk);
            for (int t = c * s.Chunk; t < t1; t++)
            {
                int o = ((b * s.T + t) * s.H + h) * kn, buf = parity * 2 * kn;
                step[buf + i] = gy[s.Gy + o + i];
                step[buf + kn + i] = v[s.V + o + i];
                Group.Barrier();
                T ki = k[s.Kk + o + i], wi = T.Exp(logw[s.W + o + i]), gyv = T.Zero, acc = T.Zero;
                for (int j = 0; j < kn; j++)
                {
                    T gyj = step[buf + j], vj = step[buf + kn + j], sij = st[j * kn + i];
                    gyv += gyj * vj;
                    acc += gyj * sij;
                    st[j * kn + i] = wi * sij + ki * vj;
                }
                gw[s.Gw + o + i] = acc;
                gr[s.Gr + o + i] = ui * ki * gyv + acc;
                parity ^= 1;
            }
        }
    }

    /// <summary>gk, gv, glogw (from A in its slot) and gu partials (B, H, K), per (b, h), t from last to first; thread i owns row i of G.</summary>
    public static void GradKernel<T>(ArrayView<T> gy, ArrayView<T> r, ArrayView<T> k, ArrayView<T> v, ArrayView<T> logw, ArrayView<T> u,
        ArrayView<T> gk, ArrayView<T> gv, ArrayView<T> gw, ArrayView<T> guParts, WkvArgs s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = Group.IdxX, groups = Grid.DimX, first = Grid.IdxX, kn = s.K, kk = kn * kn, parity = 0;
        var shared = SharedMemory.GetDynamic<T>();
        var g = shared.SubView(0, kk);                                                  // G[i, j] at i K + j
        var step = shared.SubView(kk, 10 * kn);                                         // r, k, w, gy, v, double-buffered
        for (int item = first; item < s.B * s.H; item += groups)
        {
            int h = item % s.H, b = item / s.H;
            for (int j = 0; j < kn; j++) g[i * kn + j] = T.Zero;
            T ui = u[s.U + h * kn + i], gu = T.Zero, q = T.Zero;                         // q: Q_t,i = Σ_j G_t[i, j] S_t[i, j]
            for (int t = s.T - 1; t >= 0; t--)
            {
                int o = ((b * s.T + t) * s.H + h) * kn, buf = parity * 5 * kn;
                step[buf + i] = r[s.R + o + i];
                step[buf + kn + i] = k[s.Kk + o + i];
                step[buf + 2 * kn + i] = T.Exp(logw[s.W + o + i]);
                step[buf + 3 * kn + i] = gy[s.Gy + o + i];
                step[buf + 4 * kn + i] = v[s.V + o + i];
                Group.Barrier();
                T ri = step[buf + i], ki = step[buf + kn + i], wi = step[buf + 2 * kn + i];
                T gyv = T.Zero, ruk = T.Zero, bv = T.Zero, col = T.Zero;
                for (int m = 0; m < kn; m++)
                {
                    T vm = step[buf + 4 * kn + m], km = step[buf + kn + m];
                    gyv += step[buf + 3 * kn + m] * vm;
                    ruk += step[buf + m] * u[s.U + h * kn + m] * km;
                    bv += g[i * kn + m] * vm;                                           // (G v)_i: row i
                    col += g[m * kn + i] * km;                                          // (Gᵀ k)_i: column i
                }
                gk[s.Gk + o + i] = ri * ui * gyv + bv;
                gv[s.Gv + o + i] = step[buf + 3 * kn + i] * ruk + col;
                gu += ri * ki * gyv;
                T a = gw[s.Gw + o + i], glogw = q - ki * bv;
                gw[s.Gw + o + i] = glogw;
                q = glogw + ri * a;
                Group.Barrier();                                                        // every read of G_t before it becomes G_{t-1}
                for (int j = 0; j < kn; j++) g[i * kn + j] = wi * g[i * kn + j] + ri * step[buf + 3 * kn + j];
                parity ^= 1;
            }
            guParts[(b * s.H + h) * kn + i] = gu;
        }
    }

    // ---- launchers ----

    /// <summary>Whether the kernels take these inputs: F32/F64, a head of K &lt;= a group's threads whose state and gradient fit in shared memory.</summary>
    public static bool Supports(GpuBackend b, ReadOnlySpan<Tensor> i) =>
        i[0].DType is DType.F32 or DType.F64 && i[0].Rank == 4 && i[0].Shape[3] <= b.Accelerator.MaxNumThreadsPerGroup &&
        ((long)i[0].Shape[3] * i[0].Shape[3] + 10L * i[0].Shape[3]) * i[0].DType.ByteCount(1) <= SharedLimit;

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    private static SharedMemoryConfig Shared(DType t, int elements) =>
        t == DType.F32 ? SharedMemoryConfig.RequestDynamic<float>(elements) : SharedMemoryConfig.RequestDynamic<double>(elements);

    private static WkvArgs Args(Tensor r, int chunk) => new()
    {
        B = r.Shape[0], T = r.Shape[1], H = r.Shape[2], K = r.Shape[3], Chunk = chunk, Chunks = (r.Shape[1] + chunk - 1) / chunk,
    };

    private static void CheckDense(string op, params Tensor[] ts)
    {
        foreach (var t in ts)
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernel needs dense inputs (the front end makes them), got {t.Describe()}");
    }

    public static void Forward(GpuBackend b, Tensor r, Tensor k, Tensor v, Tensor logw, Tensor u, Tensor y, Tensor states, WkvAttrs attrs)
    {
        CheckDense("Wkv6", r, k, v, logw, u);
        var s = Args(r, attrs.Chunk);
        (s.R, s.Kk, s.V, s.W, s.U, s.Y, s.States) = (r.Offset, k.Offset, v.Offset, logw.Offset, u.Offset, y.Offset, states.Offset);
        var shared = Shared(r.DType, s.K * s.K + 8 * s.K);
        var spec = ForwardSpec(r.DType);
        if (!attrs.ChunkParallel)
        {
            s.Mode = ScanKernels.Sequential;
            b.Launch(spec, new KernelConfig(b.GroupsFor((long)s.B * s.H), s.K, shared), V(r), V(k), V(v), V(logw), V(u), V(y), V(states), V(states), s);
            return;
        }
        using var decay = b.Workspace(r.DType, s.B * s.Chunks * s.H * s.K);
        var config = new KernelConfig(b.GroupsFor((long)s.B * s.Chunks * s.H), s.K, shared);
        s.Mode = ScanKernels.Local;
        b.Launch(spec, config, V(r), V(k), V(v), V(logw), V(u), V(y), V(states), CopyKernels.View(decay), s);
        b.Launch(CarrySpec(r.DType), b.Grid((long)s.B * s.H * s.K * s.K), V(states), CopyKernels.View(decay), s);
        s.Mode = ScanKernels.Output;
        b.Launch(spec, config, V(r), V(k), V(v), V(logw), V(u), V(y), V(states), CopyKernels.View(decay), s);
    }

    public static void Backward(GpuBackend b, Tensor gy, Tensor r, Tensor k, Tensor v, Tensor logw, Tensor u, Tensor states,
        Tensor gr, Tensor gk, Tensor gv, Tensor glogw, Tensor gu, WkvAttrs attrs)
    {
        CheckDense("Wkv6Backward", gy, r, k, v, logw, u, states);
        var s = Args(r, attrs.Chunk);
        (s.Gy, s.R, s.Kk, s.V, s.W, s.U, s.States, s.Gr, s.Gk, s.Gv, s.Gw) =
            (gy.Offset, r.Offset, k.Offset, v.Offset, logw.Offset, u.Offset, states.Offset, gr.Offset, gk.Offset, gv.Offset, glogw.Offset);
        b.Launch(GrSpec(r.DType), new KernelConfig(b.GroupsFor((long)s.B * s.Chunks * s.H), s.K, Shared(r.DType, s.K * s.K + 4 * s.K)),
            V(gy), V(k), V(v), V(logw), V(u), V(states), V(gr), V(glogw), s);
        using var guParts = b.Workspace(r.DType, s.B * s.H * s.K);
        b.Launch(GradSpec(r.DType), new KernelConfig(b.GroupsFor((long)s.B * s.H), s.K, Shared(r.DType, s.K * s.K + 10 * s.K)),
            V(gy), V(r), V(k), V(v), V(logw), V(u), V(gk), V(gv), V(glogw), CopyKernels.View(guParts), s);
        PartSumKernels.Sum(b, guParts, 0, gu, 1, s.B, s.H * s.K);
    }

    // ---- specs ----

    private static KernelSpec ForwardSpec(DType t) => t == DType.F32 ? new("Wkv6_F32", Fwd<float>()) : new("Wkv6_F64", Fwd<double>());
    private static KernelSpec CarrySpec(DType t) => t == DType.F32 ? new("Wkv6Carry_F32", Carry<float>()) : new("Wkv6Carry_F64", Carry<double>());
    private static KernelSpec GrSpec(DType t) => t == DType.F32 ? new("Wkv6BackwardGr_F32", Gr<float>()) : new("Wkv6BackwardGr_F64", Gr<double>());
    private static KernelSpec GradSpec(DType t) => t == DType.F32 ? new("Wkv6Backward_F32", Grad<float>()) : new("Wkv6Backward_F64", Grad<double>());

    private static MethodInfo Fwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, WkvArgs>)ForwardKernel<T>).Method;

    private static MethodInfo Carry<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, WkvArgs>)CarryKernel<T>).Method;

    private static MethodInfo Gr<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, WkvArgs>)GrKernel<T>).Method;

    private static MethodInfo Grad<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, WkvArgs>)GradKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var t in new[] { DType.F32, DType.F64 })
        {
            yield return ForwardSpec(t);
            yield return CarrySpec(t);
            yield return GrSpec(t);
            yield return GradSpec(t);
        }
    }
}
