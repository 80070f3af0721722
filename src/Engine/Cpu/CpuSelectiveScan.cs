using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// Mamba-1's selective scan on the CPU (op <see cref="ScanOps.SelectiveScan"/>; layouts there). For each batch row b
/// and channel d, a state h of N values runs over the sequence:
///   a_t = exp(Δ_t A_d)            (N; A &lt; 0 so 0 &lt; a &lt; 1: the input-dependent decay)
///   h_t = a_t ⊙ h_{t-1} + Δ_t x_t B_t
///   y_t = C_t · h_t + D_d x_t
/// Two forward schedules compute the same y:
/// - sequential: one pass over t per (b, d), the recurrence as written (mamba's selective_scan_ref);
/// - chunked: the sequence cut into chunks of <c>Chunk</c> steps. A chunk's state is linear in the state it starts
///   from: h_end = P ⊙ h_start + h_local, P = Π a_t over the chunk (= exp(A Σ Δ_t)), h_local its scan from zero.
///   Phase 1 scans every chunk from zero (chunks in parallel), phase 2 carries the start states across chunks
///   (a short sequential pass over chunk count, not steps), phase 3 reruns every chunk from its true start
///   (in parallel) to produce y. This is the schedule of the GPU kernel, where chunks are thread groups.
/// Both save the state at the start of each chunk, (B, chunks, D, N): all the backward pass keeps besides the inputs.
/// The backward pass walks chunks from last to first, recomputes a chunk's states from its saved start into a
/// (Chunk, N) buffer, and runs the reverse recurrence; nothing of size (B, L, D, N) is ever allocated.
/// </summary>
internal static class CpuSelectiveScan
{
    public static void Forward(Tensor x, Tensor delta, Tensor a, Tensor bm, Tensor cm, Tensor dskip, Tensor y, Tensor states, SelectiveScanAttrs attrs)
    {
        switch (x.DType)
        {
            case DType.F32: Forward<float>(x, delta, a, bm, cm, dskip, y, states, attrs); break;
            case DType.F64: Forward<double>(x, delta, a, bm, cm, dskip, y, states, attrs); break;
            default: throw NnKernels.Unsupported("SelectiveScan", x);
        }
    }

    public static void Backward(Tensor gy, Tensor x, Tensor delta, Tensor a, Tensor bm, Tensor cm, Tensor dskip, Tensor states,
        Tensor gx, Tensor gdelta, Tensor ga, Tensor gb, Tensor gc, Tensor gd, SelectiveScanAttrs attrs)
    {
        switch (x.DType)
        {
            case DType.F32: Backward<float>(gy, x, delta, a, bm, cm, dskip, states, gx, gdelta, ga, gb, gc, gd, attrs); break;
            case DType.F64: Backward<double>(gy, x, delta, a, bm, cm, dskip, states, gx, gdelta, ga, gb, gc, gd, attrs); break;
            default: throw NnKernels.Unsupported("SelectiveScanBackward", x);
        }
    }

    /// <summary>Sizes of one call: batch, length, channels, state size, chunk length and count.</summary>
    private readonly record struct Dims(int B, int L, int D, int N, int Chunk, int Chunks)
    {
        public static Dims Of(Tensor x, Tensor a, int chunk) =>
            new(x.Shape[0], x.Shape[1], x.Shape[2], a.Shape[1], chunk, (x.Shape[1] + chunk - 1) / chunk);

        public int Row(int b, int t) => b * L + t;                                   // row of (B, L, ·)
        public int State(int b, int c, int d) => ((b * Chunks + c) * D + d) * N;     // (B, Chunks, D, N)
    }

    /// <summary>Runs steps [t0, t1) of channel (b, d) from state h (updated in place); writes y when <paramref name="y"/> is given.</summary>
    private static void Steps<T>(Dims s, int b, int d, int t0, int t1, Span<T> h, T[] x, T[] delta, T[] a, T[] bm, T[] cm, T dd, T[]? y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var ad = new ReadOnlySpan<T>(a, d * s.N, s.N);                               // (N)
        for (int t = t0; t < t1; t++)
        {
            int r = s.Row(b, t);
            T xt = x[r * s.D + d], dt = delta[r * s.D + d], dtx = dt * xt;
            var bt = new ReadOnlySpan<T>(bm, r * s.N, s.N);                          // (N)
            var ct = new ReadOnlySpan<T>(cm, r * s.N, s.N);                          // (N)
            T acc = T.Zero;
            for (int n = 0; n < s.N; n++)
            {
                h[n] = T.Exp(dt * ad[n]) * h[n] + dtx * bt[n];
                acc += ct[n] * h[n];
            }
            if (y is not null) y[r * s.D + d] = acc + dd * xt;
        }
    }

    private static void Forward<T>(Tensor xt, Tensor deltat, Tensor at, Tensor bmt, Tensor cmt, Tensor dskipt, Tensor yt, Tensor statest, SelectiveScanAttrs attrs)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var s = Dims.Of(xt, at, attrs.Chunk);
        T[] x = In<T>(xt), delta = In<T>(deltat), a = In<T>(at), bm = In<T>(bmt), cm = In<T>(cmt), dskip = In<T>(dskipt);
        T[] y = yt.Data<T>(), states = statest.Data<T>();
        if (!attrs.ChunkParallel)
        {
            // Sequential: one pass per (b, d); the state is saved as each chunk starts.
            NnKernels.For(s.B * s.D, 4L * s.L * s.N, (_, i0, i1) =>
            {
                var h = new T[s.N];
                for (int i = i0; i < i1; i++)
                {
                    int b = i / s.D, d = i % s.D;
                    Array.Clear(h);
                    for (int c = 0; c < s.Chunks; c++)
                    {
                        h.CopyTo(states, s.State(b, c, d));
                        Steps(s, b, d, c * s.Chunk, Math.Min(s.L, (c + 1) * s.Chunk), h, x, delta, a, bm, cm, dskip[d], y);
                    }
                }
            });
            return;
        }
        // Phase 1: every chunk from a zero state, in parallel over (b, d, chunk); its end state goes to the slot of the
        // next chunk's start, its decay product P to a side buffer.
        var decay = new T[s.B * s.Chunks * s.D * s.N];                                // P per chunk, (B, Chunks, D, N)
        NnKernels.For(s.B * s.D * s.Chunks, 4L * s.Chunk * s.N, (_, i0, i1) =>
        {
            var h = new T[s.N];
            for (int i = i0; i < i1; i++)
            {
                int c = i % s.Chunks, d = i / s.Chunks % s.D, b = i / s.Chunks / s.D;
                int t0 = c * s.Chunk, t1 = Math.Min(s.L, t0 + s.Chunk);
                Array.Clear(h);
                Steps(s, b, d, t0, t1, h, x, delta, a, bm, cm, T.Zero, null);
                T sum = T.Zero;
                for (int t = t0; t < t1; t++) sum += delta[s.Row(b, t) * s.D + d];
                for (int n = 0; n < s.N; n++) decay[s.State(b, c, d) + n] = T.Exp(sum * a[d * s.N + n]);
                if (c + 1 < s.Chunks) h.CopyTo(states, s.State(b, c + 1, d));
            }
        });
        // Phase 2: start(c + 1) = P(c) ⊙ start(c) + local end(c), over chunks in order.
        NnKernels.For(s.B * s.D, 2L * s.Chunks * s.N, (_, i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                int b = i / s.D, d = i % s.D;
                new Span<T>(states, s.State(b, 0, d), s.N).Clear();
                for (int c = 1; c < s.Chunks; c++)
                    for (int n = 0; n < s.N; n++)
                        states[s.State(b, c, d) + n] += decay[s.State(b, c - 1, d) + n] * states[s.State(b, c - 1, d) + n];
            }
        });
        // Phase 3: every chunk again from its true start, writing y.
        NnKernels.For(s.B * s.D * s.Chunks, 4L * s.Chunk * s.N, (_, i0, i1) =>
        {
            var h = new T[s.N];
            for (int i = i0; i < i1; i++)
            {
                int c = i % s.Chunks, d = i / s.Chunks % s.D, b = i / s.Chunks / s.D;
                new ReadOnlySpan<T>(states, s.State(b, c, d), s.N).CopyTo(h);
                Steps(s, b, d, c * s.Chunk, Math.Min(s.L, (c + 1) * s.Chunk), h, x, delta, a, bm, cm, dskip[d], y);
            }
        });
    }

    /// <summary>
    /// The reverse recurrence, per (b, d), chunks last to first. With gh the gradient of the loss with respect to h_t
    /// (from y_t and, through h_{t+1} = a_{t+1} h_t + ..., from later steps):
    ///   gh_t = gy_t C_t + a_{t+1} ⊙ gh_{t+1}
    ///   gΔ_t = Σ_n gh_t,n (A_n a_t,n h_{t-1},n + B_t,n x_t)     gA_n += gh_t,n Δ_t a_t,n h_{t-1},n
    ///   gB_t += gh_t Δ_t x_t        gC_t += gy_t h_t        gx_t = D gy_t + Δ_t Σ_n gh_t,n B_t,n        gD += gy_t x_t
    /// gB and gC sum over channels and gA, gD over the batch, so each thread sums into its own partial buffers,
    /// added up at the end in a fixed order (the result does not depend on the thread schedule).
    /// </summary>
    private static void Backward<T>(Tensor gyt, Tensor xt, Tensor deltat, Tensor at, Tensor bmt, Tensor cmt, Tensor dskipt, Tensor statest,
        Tensor gxt, Tensor gdeltat, Tensor gat, Tensor gbt, Tensor gct, Tensor gdt, SelectiveScanAttrs attrs)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var s = Dims.Of(xt, at, attrs.Chunk);
        T[] gy = In<T>(gyt), x = In<T>(xt), delta = In<T>(deltat), a = In<T>(at), bm = In<T>(bmt), cm = In<T>(cmt);
        T[] dskip = In<T>(dskipt), states = In<T>(statest), gx = gxt.Data<T>(), gdelta = gdeltat.Data<T>();
        int parts = NnKernels.ChunkCount(s.B * s.D, 8L * s.L * s.N);
        var gbParts = new T[parts * s.B * s.L * s.N];                                 // (parts, B, L, N)
        var gcParts = new T[parts * s.B * s.L * s.N];
        var gaParts = new T[s.B * s.D * s.N];                                          // (B, D, N): one owner per (b, d)
        var gdParts = new T[s.B * s.D];                                                // (B, D)
        NnKernels.ForChunks(parts, s.B * s.D, (part, i0, i1) =>
        {
            var hs = new T[s.Chunk * s.N];                                             // a chunk's states, (Chunk, N)
            var gh = new T[s.N];
            var gb = new Span<T>(gbParts, part * s.B * s.L * s.N, s.B * s.L * s.N);
            var gc = new Span<T>(gcParts, part * s.B * s.L * s.N, s.B * s.L * s.N);
            for (int i = i0; i < i1; i++)
            {
                int b = i / s.D, d = i % s.D;
                var ad = new ReadOnlySpan<T>(a, d * s.N, s.N);                        // (N)
                var ga = new Span<T>(gaParts, (b * s.D + d) * s.N, s.N);              // (N)
                T dd = dskip[d], gdd = T.Zero;
                Array.Clear(gh);
                for (int c = s.Chunks - 1; c >= 0; c--)
                {
                    int t0 = c * s.Chunk, t1 = Math.Min(s.L, t0 + s.Chunk);
                    var start = new ReadOnlySpan<T>(states, s.State(b, c, d), s.N);
                    var h = new Span<T>(hs, 0, s.N);
                    start.CopyTo(h);
                    for (int t = t0; t < t1; t++)                                      // recompute h_t for the chunk
                    {
                        var ht = new Span<T>(hs, (t - t0) * s.N, s.N);
                        if (t > t0) new ReadOnlySpan<T>(hs, (t - t0 - 1) * s.N, s.N).CopyTo(ht);
                        int r = s.Row(b, t);
                        T dt = delta[r * s.D + d], dtx = dt * x[r * s.D + d];
                        for (int n = 0; n < s.N; n++) ht[n] = T.Exp(dt * ad[n]) * ht[n] + dtx * bm[r * s.N + n];
                    }
                    for (int t = t1 - 1; t >= t0; t--)
                    {
                        int r = s.Row(b, t);
                        T xv = x[r * s.D + d], dt = delta[r * s.D + d], g = gy[r * s.D + d];
                        var ht = new ReadOnlySpan<T>(hs, (t - t0) * s.N, s.N);
                        var hprev = t > t0 ? new ReadOnlySpan<T>(hs, (t - t0 - 1) * s.N, s.N) : start;
                        T gdt = T.Zero, gxv = dd * g;
                        gdd += g * xv;
                        for (int n = 0; n < s.N; n++)
                        {
                            T bn = bm[r * s.N + n], an = T.Exp(dt * ad[n]);
                            gc[r * s.N + n] += g * ht[n];
                            T ghn = gh[n] + g * cm[r * s.N + n];
                            gdt += ghn * (ad[n] * an * hprev[n] + bn * xv);
                            ga[n] += ghn * dt * an * hprev[n];
                            gb[r * s.N + n] += ghn * dt * xv;
                            gxv += ghn * dt * bn;
                            gh[n] = ghn * an;                                          // into h_{t-1}
                        }
                        gdelta[r * s.D + d] = gdt;
                        gx[r * s.D + d] = gxv;
                    }
                }
                gdParts[b * s.D + d] = gdd;
            }
        });
        Sum<T>(gbParts, parts, gbt.Span<T>());
        Sum<T>(gcParts, parts, gct.Span<T>());
        Sum<T>(gaParts, s.B, gat.Span<T>());
        Sum<T>(gdParts, s.B, gdt.Span<T>());
    }

    /// <summary>A dense input's elements from index 0 (copied only when it is a view that starts later in its storage).</summary>
    internal static T[] In<T>(Tensor t) where T : unmanaged => t.Offset == 0 ? t.Data<T>() : t.Span<T>().ToArray();

    /// <summary>out = Σ_p parts[p], parts laid out (count, out.Length).</summary>
    internal static void Sum<T>(T[] parts, int count, Span<T> output) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = output.Length;
        output.Clear();
        for (int p = 0; p < count; p++)
            for (int i = 0; i < n; i++) output[i] += parts[p * n + i];
    }
}
