using System.Numerics;
using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Kernels;

/// <summary>Sizes, schedule and element offsets of one selective-scan launch (<see cref="ScanKernels"/>).</summary>
internal struct ScanArgs
{
    public int B, L, D, N, Chunk, Chunks;
    /// <summary>Channels per thread group (the group has DT x N threads) and groups across D: ceil(D / DT).</summary>
    public int DT, Tiles;
    /// <summary>Backward: groups per batch row; group p runs tiles p, p + Parts, ... and owns partial p of gB and gC.</summary>
    public int Parts;
    /// <summary>Forward pass: <see cref="ScanKernels.Local"/>, <see cref="ScanKernels.Output"/> or <see cref="ScanKernels.Sequential"/>.</summary>
    public int Mode;
    public int X, Delta, A, Bm, Cm, Dskip, Y, States, Gy, Gx, Gdelta;
}

/// <summary>
/// Mamba's selective scan on the GPU (op <see cref="ScanOps.SelectiveScan"/>; the math and the schedules are
/// those of <see cref="Cpu.CpuSelectiveScan"/>). Every thread owns one state element h[b, d, n] and keeps it in a
/// register; a group holds DT channels x N states of one batch row (and, in the forward pass, one chunk), so the
/// state of (B, L, D, N) is never written to global memory: only the chunk starts (B, Chunks, D, N) are.
/// Forward, three launches as on the CPU: (1) <see cref="Local"/>: every (b, chunk, channel tile) from a zero state,
/// its end state into the next chunk's start slot and its decay product exp(A Σ Δ) into a workspace;
/// (2) <see cref="CarryKernel{T}"/>: start(c + 1) += P(c) start(c), one thread per (b, d, n) over the chunks;
/// (3) <see cref="Output"/>: every chunk again from its true start, writing y. y_t = Σ_n C_t,n h_t,n + D x_t sums
/// across the N threads of a channel: each writes C h into shared memory, and after a barrier the channel's n = 0
/// thread adds them in order n = 0, 1, ... (the CPU's order). <see cref="Sequential"/>: one pass per (b, tile).
/// Backward: a group takes a batch row and a channel tile at a time, walks the chunks last to first, recomputes a
/// chunk's states into shared memory (Chunk x threads) from the saved start, and runs the reverse recurrence; Δ and
/// x gradients sum over n inside the group, B and C gradients over the group's channels and then over the tiles the
/// group runs (P partials per batch row, P independent of D, so the partials are (B·L, P, N), not (B, L, D, N)),
/// A and D gradients over the steps (one partial per batch row); <see cref="PartSumKernels"/> adds the partials in order.
/// </summary>
internal static class ScanKernels
{
    public const int Local = 0, Output = 1, Sequential = 2;

    /// <summary>Shared memory one group may use without opting in (48 KB).</summary>
    private const int SharedLimit = 48 * 1024;

    // ---- kernels ----

    public static void ForwardKernel<T>(ArrayView<T> x, ArrayView<T> delta, ArrayView<T> a, ArrayView<T> bm, ArrayView<T> cm, ArrayView<T> dskip,
        ArrayView<T> y, ArrayView<T> states, ArrayView<T> decay, ScanArgs s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX, first = Grid.IdxX;
        int n = tid % s.N, dl = tid / s.N, mode = s.Mode;
        var products = SharedMemory.GetDynamic<T>();                                   // 2 x threads: C h, double-buffered
        int segments = mode == Sequential ? 1 : s.Chunks, parity = 0;
        for (int item = first; item < s.B * segments * s.Tiles; item += groups)
        {
            int tile = item % s.Tiles, seg = item / s.Tiles % segments, b = item / s.Tiles / segments;
            int d = tile * s.DT + dl;
            bool live = d < s.D;                                                       // the last tile may be partial
            int c0 = mode == Sequential ? 0 : seg, c1 = mode == Sequential ? s.Chunks : seg + 1;
            T an = live ? a[s.A + d * s.N + n] : T.Zero, dd = live ? dskip[s.Dskip + d] : T.Zero;
            T h = mode == Output && live ? states[s.States + ((b * s.Chunks + c0) * s.D + d) * s.N + n] : T.Zero;
            T sumDelta = T.Zero;
            for (int c = c0; c < c1; c++)
            {
                if (mode == Sequential && live) states[s.States + ((b * s.Chunks + c) * s.D + d) * s.N + n] = h;
                int t1 = Math.Min(s.L, (c + 1) * s.Chunk);
                for (int t = c * s.Chunk; t < t1; t++)
                {
                    int row = b * s.L + t;
                    T xt = T.Zero, dt = T.Zero, bt = T.Zero, ct = T.Zero;
                    if (live)
                    {
                        xt = x[s.X + row * s.D + d];
                        dt = delta[s.Delta + row * s.D + d];
                        bt = bm[s.Bm + row * s.N + n];
                        ct = cm[s.Cm + row * s.N + n];
                    }
                    h = T.Exp(dt * an) * h + dt * xt * bt;
                    sumDelta += dt;
                    if (mode == Local) continue;
                    // Writes go to the buffer not read in the previous step, so one barrier per step suffices.
                    int buf = parity * threads;
                    products[buf + tid] = ct * h;
                    Group.Barrier();
                    if (n == 0 && live)
                    {
                        T acc = T.Zero;
                        for (int m = 0; m < s.N; m++) acc += products[buf + dl * s.N + m];
                        y[s.Y + row * s.D + d] = acc + dd * xt;
                    }
                    parity ^= 1;
                }
            }
            if (mode == Local && live)
            {
                decay[((b * s.Chunks + c0) * s.D + d) * s.N + n] = T.Exp(sumDelta * an);
                if (c0 + 1 < s.Chunks) states[s.States + ((b * s.Chunks + c0 + 1) * s.D + d) * s.N + n] = h;
            }
        }
    }

    /// <summary>start(0) = 0, start(c) = local end(c - 1) + P(c - 1) ⊙ start(c - 1): one thread per (b, d, n), chunks in order.</summary>
    public static void CarryKernel<T>(ArrayView<T> states, ArrayView<T> decay, int statesOffset, int batch, int perChunk, int chunks)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int step = Grid.DimX * Group.DimX;
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < batch * perChunk; e += step)
        {
            int b = e / perChunk, i = b * chunks * perChunk + (e - b * perChunk);
            states[statesOffset + i] = T.Zero;
            for (int c = 1; c < chunks; c++)
                states[statesOffset + i + c * perChunk] += decay[i + (c - 1) * perChunk] * states[statesOffset + i + (c - 1) * perChunk];
        }
    }

    /// <summary>
    /// The reverse recurrence of <see cref="Cpu.CpuSelectiveScan"/>'s backward, per thread (b, d, n), chunks last to first.
    /// parts holds, in order: gB partials (B·L, Parts, N), gC partials (B·L, Parts, N), gA partials (B, D, N), gD partials (B, D).
    /// </summary>
    public static void BackwardKernel<T>(ArrayView<T> gy, ArrayView<T> x, ArrayView<T> delta, ArrayView<T> a, ArrayView<T> bm, ArrayView<T> cm,
        ArrayView<T> dskip, ArrayView<T> states, ArrayView<T> gx, ArrayView<T> gdelta, ArrayView<T> parts, ScanArgs s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int tid = Group.IdxX, threads = Group.DimX, groups = Grid.DimX, first = Grid.IdxX;
        int n = tid % s.N, dl = tid / s.N;
        var shared = SharedMemory.GetDynamic<T>();
        var hist = shared.SubView(0, s.Chunk * threads);                               // h_t of this chunk, (Chunk, threads)
        var red = shared.SubView(s.Chunk * threads, 8 * threads);                      // 4 products x threads, double-buffered
        int partsBC = s.B * s.L * s.Parts * s.N, gaAt = 2 * partsBC, gdAt = gaAt + s.B * s.D * s.N, parity = 0;
        // A unit (b, p) is one group's: it runs tiles p, p + Parts, ... of batch row b in turn and alone owns partial p.
        for (int unit = first; unit < s.B * s.Parts; unit += groups)
        for (int tile = unit % s.Parts; tile < s.Tiles; tile += s.Parts)
        {
            int b = unit / s.Parts, p = unit % s.Parts, d = tile * s.DT + dl;
            bool live = d < s.D;
            int channels = Math.Min(s.DT, s.D - tile * s.DT);                          // live channels of this tile
            T an = live ? a[s.A + d * s.N + n] : T.Zero, dd = live ? dskip[s.Dskip + d] : T.Zero;
            T gh = T.Zero, ga = T.Zero, gdd = T.Zero;                                  // gh: dL/dh_t from steps after t
            for (int c = s.Chunks - 1; c >= 0; c--)
            {
                int t0 = c * s.Chunk, t1 = Math.Min(s.L, t0 + s.Chunk);
                T start = live ? states[s.States + ((b * s.Chunks + c) * s.D + d) * s.N + n] : T.Zero, h = start;
                for (int t = t0; t < t1; t++)                                          // recompute h_t for the chunk
                {
                    int row = b * s.L + t;
                    if (live)
                    {
                        T dt = delta[s.Delta + row * s.D + d];
                        h = T.Exp(dt * an) * h + dt * x[s.X + row * s.D + d] * bm[s.Bm + row * s.N + n];
                    }
                    hist[(t - t0) * threads + tid] = h;
                }
                for (int t = t1 - 1; t >= t0; t--)
                {
                    int row = b * s.L + t;
                    T g = T.Zero, xv = T.Zero, dt = T.Zero, bn = T.Zero, cn = T.Zero;
                    if (live)
                    {
                        g = gy[s.Gy + row * s.D + d];
                        xv = x[s.X + row * s.D + d];
                        dt = delta[s.Delta + row * s.D + d];
                        bn = bm[s.Bm + row * s.N + n];
                        cn = cm[s.Cm + row * s.N + n];
                    }
                    T ht = hist[(t - t0) * threads + tid], hprev = t > t0 ? hist[(t - t0 - 1) * threads + tid] : start;
                    T at = T.Exp(dt * an), ghn = gh + g * cn;                           // ghn: dL/dh_t in full
                    int buf = parity * 4 * threads;
                    red[buf + tid] = ghn * (an * at * hprev + bn * xv);                // -> gΔ_t (sum over n)
                    red[buf + threads + tid] = ghn * dt * bn;                           // -> gx_t (sum over n)
                    red[buf + 2 * threads + tid] = ghn * dt * xv;                       // -> gB_t,n (sum over d)
                    red[buf + 3 * threads + tid] = g * ht;                              // -> gC_t,n (sum over d)
                    ga += ghn * dt * at * hprev;
                    gdd += g * xv;
                    gh = ghn * at;                                                      // into h_{t-1}
                    Group.Barrier();
                    if (n == 0 && live)
                    {
                        T gdt = T.Zero, gxv = dd * g;
                        for (int m = 0; m < s.N; m++)
                        {
                            gdt += red[buf + dl * s.N + m];
                            gxv += red[buf + threads + dl * s.N + m];
                        }
                        gdelta[s.Gdelta + row * s.D + d] = gdt;
                        gx[s.Gx + row * s.D + d] = gxv;
                    }
                    if (dl == 0)
                    {
                        T gbn = T.Zero, gcn = T.Zero;
                        for (int j = 0; j < channels; j++)
                        {
                            gbn += red[buf + 2 * threads + j * s.N + n];
                            gcn += red[buf + 3 * threads + j * s.N + n];
                        }
                        int slot = (row * s.Parts + p) * s.N + n;
                        parts[slot] = tile == p ? gbn : parts[slot] + gbn;
                        parts[partsBC + slot] = tile == p ? gcn : parts[partsBC + slot] + gcn;
                    }
                    parity ^= 1;
                }
            }
            if (live)
            {
                parts[gaAt + (b * s.D + d) * s.N + n] = ga;
                if (n == 0) parts[gdAt + b * s.D + d] = gdd;
            }
        }
    }

    // ---- launchers ----

    /// <summary>Channels per group of the backward pass: up to 64 threads, fewer where a chunk's states would not fit in shared memory; 0: no fit.</summary>
    private static int BackwardChannels(int d, int n, int chunk, int elementBytes, int maxThreads)
    {
        if (n > maxThreads) return 0;
        for (int dt = Math.Clamp(64 / n, 1, d); dt >= 1; dt--)
            if ((long)(chunk + 8) * dt * n * elementBytes <= SharedLimit) return dt;
        return 0;
    }

    /// <summary>Whether the kernels take these inputs (F32/F64, N within a group, a chunk's states within shared memory); otherwise the composite runs.</summary>
    public static bool Supports(GpuBackend b, ReadOnlySpan<Tensor> i, OpAttrs? attrs) =>
        i[0].DType is DType.F32 or DType.F64 && attrs is SelectiveScanAttrs sa && i[2].Rank == 2 && i[0].Rank == 3 &&
        BackwardChannels(i[0].Shape[2], i[2].Shape[1], sa.Chunk, (int)i[0].DType.ByteCount(1), b.Accelerator.MaxNumThreadsPerGroup) > 0;

    private static object V(Tensor t) => CopyKernels.View((GpuStorage)t.Storage);

    private static void CheckDense(string op, params Tensor[] ts)
    {
        foreach (var t in ts)
            if (!t.IsContiguous) throw new ArgumentException($"{op}: the GPU kernel needs dense inputs (the front end makes them), got {t.Describe()}");
    }

    private static ScanArgs Args(Tensor x, Tensor a, int chunk, int dt) => new()
    {
        B = x.Shape[0], L = x.Shape[1], D = x.Shape[2], N = a.Shape[1], Chunk = chunk, Chunks = (x.Shape[1] + chunk - 1) / chunk,
        DT = dt, Tiles = (x.Shape[2] + dt - 1) / dt,
    };

    private static SharedMemoryConfig Shared(DType t, int elements) =>
        t == DType.F32 ? SharedMemoryConfig.RequestDynamic<float>(elements) : SharedMemoryConfig.RequestDynamic<double>(elements);

    public static void Forward(GpuBackend b, Tensor x, Tensor delta, Tensor a, Tensor bm, Tensor cm, Tensor dskip, Tensor y, Tensor states, SelectiveScanAttrs attrs)
    {
        CheckDense("SelectiveScan", x, delta, a, bm, cm, dskip);
        int n = a.Shape[1];
        var s = Args(x, a, attrs.Chunk, Math.Clamp(b.GroupSize / n, 1, x.Shape[2]));
        (s.X, s.Delta, s.A, s.Bm, s.Cm, s.Dskip, s.Y, s.States) = (x.Offset, delta.Offset, a.Offset, bm.Offset, cm.Offset, dskip.Offset, y.Offset, states.Offset);
        int threads = s.DT * n;
        var shared = Shared(x.DType, 2 * threads);
        var spec = ForwardSpec(x.DType);
        if (!attrs.ChunkParallel)
        {
            s.Mode = Sequential;
            b.Launch(spec, new KernelConfig(b.GroupsFor((long)s.B * s.Tiles), threads, shared), V(x), V(delta), V(a), V(bm), V(cm), V(dskip), V(y), V(states), V(states), s);
            return;
        }
        using var decay = b.Workspace(x.DType, s.B * s.Chunks * s.D * n);
        var config = new KernelConfig(b.GroupsFor((long)s.B * s.Chunks * s.Tiles), threads, shared);
        s.Mode = Local;
        b.Launch(spec, config, V(x), V(delta), V(a), V(bm), V(cm), V(dskip), V(y), V(states), CopyKernels.View(decay), s);
        b.Launch(CarrySpec(x.DType), b.Grid((long)s.B * s.D * n), V(states), CopyKernels.View(decay), states.Offset, s.B, s.D * n, s.Chunks);
        s.Mode = Output;
        b.Launch(spec, config, V(x), V(delta), V(a), V(bm), V(cm), V(dskip), V(y), V(states), CopyKernels.View(decay), s);
    }

    public static void Backward(GpuBackend b, Tensor gy, Tensor x, Tensor delta, Tensor a, Tensor bm, Tensor cm, Tensor dskip, Tensor states,
        Tensor gx, Tensor gdelta, Tensor ga, Tensor gb, Tensor gc, Tensor gd, SelectiveScanAttrs attrs)
    {
        CheckDense("SelectiveScanBackward", gy, x, delta, a, bm, cm, dskip, states);
        int n = a.Shape[1], elementBytes = (int)x.DType.ByteCount(1);
        int dt = BackwardChannels(x.Shape[2], n, attrs.Chunk, elementBytes, b.Accelerator.MaxNumThreadsPerGroup);
        if (dt == 0) throw new NotSupportedException($"SelectiveScanBackward: a chunk of {attrs.Chunk} steps of N = {n} states does not fit the GPU kernel's shared memory; use a shorter chunk");
        var s = Args(x, a, attrs.Chunk, dt);
        // About a quarter of a grid-stride launch's groups per batch row: enough groups to fill the GPU, while the gB/gC
        // partials stay (B·L, Parts, N) whatever D is (on ILGPU's CPU accelerator one group runs every tile).
        s.Parts = Math.Clamp(b.MaxGroups / (4 * s.B), 1, s.Tiles);
        (s.Gy, s.X, s.Delta, s.A, s.Bm, s.Cm, s.Dskip, s.States, s.Gx, s.Gdelta) =
            (gy.Offset, x.Offset, delta.Offset, a.Offset, bm.Offset, cm.Offset, dskip.Offset, states.Offset, gx.Offset, gdelta.Offset);
        int threads = dt * n, partsBC = s.B * s.L * s.Parts * n;
        using var parts = b.Workspace(x.DType, 2 * partsBC + s.B * s.D * n + s.B * s.D);
        b.Launch(BackwardSpec(x.DType), new KernelConfig(b.GroupsFor((long)s.B * s.Parts), threads, Shared(x.DType, (s.Chunk + 8) * threads)),
            V(gy), V(x), V(delta), V(a), V(bm), V(cm), V(dskip), V(states), V(gx), V(gdelta), CopyKernels.View(parts), s);
        PartSumKernels.Sum(b, parts, 0, gb, s.B * s.L, s.Parts, n);
        PartSumKernels.Sum(b, parts, partsBC, gc, s.B * s.L, s.Parts, n);
        PartSumKernels.Sum(b, parts, 2 * partsBC, ga, 1, s.B, s.D * n);
        PartSumKernels.Sum(b, parts, 2 * partsBC + s.B * s.D * n, gd, 1, s.B, s.D);
    }

    // ---- specs ----

    private static KernelSpec ForwardSpec(DType t) => t == DType.F32 ? new("SelectiveScan_F32", Fwd<float>()) : new("SelectiveScan_F64", Fwd<double>());
    private static KernelSpec CarrySpec(DType t) => t == DType.F32 ? new("SelectiveScanCarry_F32", Carry<float>()) : new("SelectiveScanCarry_F64", Carry<double>());
    private static KernelSpec BackwardSpec(DType t) => t == DType.F32 ? new("SelectiveScanBackward_F32", Bwd<float>()) : new("SelectiveScanBackward_F64", Bwd<double>());

    private static MethodInfo Fwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ScanArgs>)ForwardKernel<T>).Method;

    private static MethodInfo Carry<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, int, int, int, int>)CarryKernel<T>).Method;

    private static MethodInfo Bwd<T>() where T : unmanaged, IFloatingPointIeee754<T> =>
        ((Action<ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, ScanArgs>)BackwardKernel<T>).Method;

    public static IEnumerable<KernelSpec> Specs()
    {
        foreach (var t in new[] { DType.F32, DType.F64 })
        {
            yield return ForwardSpec(t);
            yield return CarrySpec(t);
            yield return BackwardSpec(t);
        }
    }
}
