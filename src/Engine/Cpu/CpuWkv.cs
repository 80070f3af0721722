using System.Numerics;

namespace ManagedTensor.Cpu;

/// <summary>
/// RWKV-6's WKV on the CPU (op <see cref="WkvOps.Wkv6"/>; layouts there). Per batch row b and head h, a state S
/// of K x K values (key channel i, value channel j) runs over the sequence with a per-step, per-channel decay:
///   y_t,j = Σ_i r_t,i (S_{t-1}[i, j] + u_i k_t,i v_t,j)        (the current token enters through the bonus u)
///   S_t   = diag(w_t) S_{t-1} + k_t v_tᵀ,   w_t = exp(logw_t) in (0, 1)
/// The schedules are those of <see cref="CpuSelectiveScan"/>: sequential, or chunked in three phases (chunks from
/// zero in parallel; start states carried across chunks, S_start(c + 1) = diag(Π_chunk w) S_start(c) + S_local(c);
/// chunks rerun from their true start). Both save the state at the start of each chunk, (B, chunks, H, K, K), and
/// the backward pass recomputes one chunk's states at a time from it.
/// </summary>
internal static class CpuWkv
{
    public static void Forward(Tensor r, Tensor k, Tensor v, Tensor logw, Tensor u, Tensor y, Tensor states, WkvAttrs attrs)
    {
        switch (r.DType)
        {
            case DType.F32: Forward<float>(r, k, v, logw, u, y, states, attrs); break;
            case DType.F64: Forward<double>(r, k, v, logw, u, y, states, attrs); break;
            default: throw NnKernels.Unsupported("Wkv6", r);
        }
    }

    public static void Backward(Tensor gy, Tensor r, Tensor k, Tensor v, Tensor logw, Tensor u, Tensor states,
        Tensor gr, Tensor gk, Tensor gv, Tensor glogw, Tensor gu, WkvAttrs attrs)
    {
        switch (r.DType)
        {
            case DType.F32: Backward<float>(gy, r, k, v, logw, u, states, gr, gk, gv, glogw, gu, attrs); break;
            case DType.F64: Backward<double>(gy, r, k, v, logw, u, states, gr, gk, gv, glogw, gu, attrs); break;
            default: throw NnKernels.Unsupported("Wkv6Backward", r);
        }
    }

    /// <summary>Sizes of one call: batch, length, heads, head size, chunk length and count.</summary>
    private readonly record struct Dims(int B, int T, int H, int K, int Chunk, int Chunks)
    {
        public static Dims Of(Tensor r, int chunk) =>
            new(r.Shape[0], r.Shape[1], r.Shape[2], r.Shape[3], chunk, (r.Shape[1] + chunk - 1) / chunk);

        public int Vec(int b, int t, int h) => ((b * T + t) * H + h) * K;                   // (B, T, H, K)
        public int State(int b, int c, int h) => ((b * Chunks + c) * H + h) * K * K;        // (B, Chunks, H, K, K)
    }

    /// <summary>Steps [t0, t1) of head (b, h) from state s (K x K, updated in place); writes y when <paramref name="y"/> is given.</summary>
    private static void Steps<T>(Dims d, int b, int h, int t0, int t1, Span<T> s, T[] r, T[] k, T[] v, T[] logw, T[] u, T[]? y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int kk = d.K;
        var uh = new ReadOnlySpan<T>(u, h * kk, kk);                                           // (K)
        for (int t = t0; t < t1; t++)
        {
            int o = d.Vec(b, t, h);
            var yt = y is null ? default : new Span<T>(y, o, kk);                              // (K)
            yt.Clear();
            for (int i = 0; i < kk; i++)
            {
                T ri = r[o + i], ki = k[o + i], wi = T.Exp(logw[o + i]), bonus = uh[i] * ki;
                var si = s.Slice(i * kk, kk);                                                  // row i of S, (K)
                for (int j = 0; j < kk; j++)
                {
                    T vj = v[o + j];
                    if (y is not null) yt[j] += ri * (si[j] + bonus * vj);
                    si[j] = wi * si[j] + ki * vj;
                }
            }
        }
    }

    private static void Forward<T>(Tensor rt, Tensor kt, Tensor vt, Tensor logwt, Tensor ut, Tensor yt, Tensor statest, WkvAttrs attrs)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var d = Dims.Of(rt, attrs.Chunk);
        T[] r = CpuSelectiveScan.In<T>(rt), k = CpuSelectiveScan.In<T>(kt), v = CpuSelectiveScan.In<T>(vt);
        T[] logw = CpuSelectiveScan.In<T>(logwt), u = CpuSelectiveScan.In<T>(ut), y = yt.Data<T>(), states = statest.Data<T>();
        int kk = d.K * d.K;
        if (!attrs.ChunkParallel)
        {
            NnKernels.For(d.B * d.H, 3L * d.T * kk, (_, i0, i1) =>
            {
                var s = new T[kk];
                for (int i = i0; i < i1; i++)
                {
                    int b = i / d.H, h = i % d.H;
                    Array.Clear(s);
                    for (int c = 0; c < d.Chunks; c++)
                    {
                        s.CopyTo(states, d.State(b, c, h));
                        Steps(d, b, h, c * d.Chunk, Math.Min(d.T, (c + 1) * d.Chunk), s, r, k, v, logw, u, y);
                    }
                }
            });
            return;
        }
        // Phase 1: each chunk from a zero state; its end state lands in the next chunk's start slot, its decay
        // product Π w (per key channel) in a side buffer.
        var decay = new T[d.B * d.Chunks * d.H * d.K];                                        // (B, Chunks, H, K)
        NnKernels.For(d.B * d.H * d.Chunks, 3L * d.Chunk * kk, (_, i0, i1) =>
        {
            var s = new T[kk];
            for (int i = i0; i < i1; i++)
            {
                int c = i % d.Chunks, h = i / d.Chunks % d.H, b = i / d.Chunks / d.H;
                int t0 = c * d.Chunk, t1 = Math.Min(d.T, t0 + d.Chunk);
                Array.Clear(s);
                Steps(d, b, h, t0, t1, s, r, k, v, logw, u, null);
                for (int ch = 0; ch < d.K; ch++)
                {
                    T sum = T.Zero;
                    for (int t = t0; t < t1; t++) sum += logw[d.Vec(b, t, h) + ch];
                    decay[((b * d.Chunks + c) * d.H + h) * d.K + ch] = T.Exp(sum);
                }
                if (c + 1 < d.Chunks) s.CopyTo(states, d.State(b, c + 1, h));
            }
        });
        // Phase 2: S_start(c + 1) += diag(P(c)) S_start(c), chunks in order.
        NnKernels.For(d.B * d.H, 2L * d.Chunks * kk, (_, i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                int b = i / d.H, h = i % d.H;
                new Span<T>(states, d.State(b, 0, h), kk).Clear();
                for (int c = 1; c < d.Chunks; c++)
                    for (int ch = 0; ch < d.K; ch++)
                    {
                        T p = decay[((b * d.Chunks + c - 1) * d.H + h) * d.K + ch];
                        for (int j = 0; j < d.K; j++)
                            states[d.State(b, c, h) + ch * d.K + j] += p * states[d.State(b, c - 1, h) + ch * d.K + j];
                    }
            }
        });
        // Phase 3: each chunk again from its true start, writing y.
        NnKernels.For(d.B * d.H * d.Chunks, 3L * d.Chunk * kk, (_, i0, i1) =>
        {
            var s = new T[kk];
            for (int i = i0; i < i1; i++)
            {
                int c = i % d.Chunks, h = i / d.Chunks % d.H, b = i / d.Chunks / d.H;
                new ReadOnlySpan<T>(states, d.State(b, c, h), kk).CopyTo(s);
                Steps(d, b, h, c * d.Chunk, Math.Min(d.T, (c + 1) * d.Chunk), s, r, k, v, logw, u, y);
            }
        });
    }

    /// <summary>
    /// The reverse recurrence per (b, h), chunks last to first, with G the gradient with respect to S_t (the state
    /// after step t) and S_{t-1} recomputed for the chunk:
    ///   gr_t,i = Σ_j gy_t,j S_{t-1}[i, j] + u_i k_t,i (gy_t · v_t)         gu_i += r_t,i k_t,i (gy_t · v_t)
    ///   gk_t,i = r_t,i u_i (gy_t · v_t) + Σ_j G[i, j] v_t,j               gv_t,j = gy_t,j Σ_i r_t,i u_i k_t,i + Σ_i G[i, j] k_t,i
    ///   glogw_t,i = w_t,i Σ_j G[i, j] S_{t-1}[i, j]                        then G ← diag(w_t) G + r_t gy_tᵀ (the gradient of S_{t-1}).
    /// gu sums over the batch: a partial per (b, h), added up at the end in a fixed order.
    /// </summary>
    private static void Backward<T>(Tensor gyt, Tensor rt, Tensor kt, Tensor vt, Tensor logwt, Tensor ut, Tensor statest,
        Tensor grt, Tensor gkt, Tensor gvt, Tensor glogwt, Tensor gut, WkvAttrs attrs)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var d = Dims.Of(rt, attrs.Chunk);
        T[] gy = CpuSelectiveScan.In<T>(gyt), r = CpuSelectiveScan.In<T>(rt), k = CpuSelectiveScan.In<T>(kt), v = CpuSelectiveScan.In<T>(vt);
        T[] logw = CpuSelectiveScan.In<T>(logwt), u = CpuSelectiveScan.In<T>(ut), states = CpuSelectiveScan.In<T>(statest);
        T[] gr = grt.Data<T>(), gk = gkt.Data<T>(), gv = gvt.Data<T>(), glogw = glogwt.Data<T>();
        int kk = d.K * d.K;
        var guParts = new T[d.B * d.H * d.K];                                                 // (B, H, K)
        NnKernels.For(d.B * d.H, 6L * d.T * kk, (_, i0, i1) =>
        {
            var before = new T[d.Chunk * kk];                                                  // S_{t-1} for each step of a chunk
            var g = new T[kk];                                                                 // dL/dS_t
            for (int i = i0; i < i1; i++)
            {
                int b = i / d.H, h = i % d.H;
                var uh = new ReadOnlySpan<T>(u, h * d.K, d.K);
                var gu = new Span<T>(guParts, (b * d.H + h) * d.K, d.K);
                Array.Clear(g);
                for (int c = d.Chunks - 1; c >= 0; c--)
                {
                    int t0 = c * d.Chunk, t1 = Math.Min(d.T, t0 + d.Chunk);
                    new ReadOnlySpan<T>(states, d.State(b, c, h), kk).CopyTo(before);
                    for (int t = t0 + 1; t < t1; t++)
                    {
                        var s = new Span<T>(before, (t - t0) * kk, kk);
                        new ReadOnlySpan<T>(before, (t - t0 - 1) * kk, kk).CopyTo(s);
                        Steps(d, b, h, t - 1, t, s, r, k, v, logw, u, null);
                    }
                    for (int t = t1 - 1; t >= t0; t--)
                    {
                        int o = d.Vec(b, t, h);
                        var sp = new ReadOnlySpan<T>(before, (t - t0) * kk, kk);                 // S_{t-1}
                        T gyv = T.Zero, rukSum = T.Zero;
                        for (int j = 0; j < d.K; j++) gyv += gy[o + j] * v[o + j];
                        for (int ii = 0; ii < d.K; ii++) rukSum += r[o + ii] * uh[ii] * k[o + ii];
                        for (int j = 0; j < d.K; j++) gv[o + j] = gy[o + j] * rukSum;
                        for (int ii = 0; ii < d.K; ii++)
                        {
                            T ri = r[o + ii], ki = k[o + ii], wi = T.Exp(logw[o + ii]);
                            T grAcc = uh[ii] * ki * gyv, gkAcc = ri * uh[ii] * gyv, gwAcc = T.Zero;
                            gu[ii] += ri * ki * gyv;
                            var gi = new Span<T>(g, ii * d.K, d.K);
                            var si = sp.Slice(ii * d.K, d.K);
                            for (int j = 0; j < d.K; j++)
                            {
                                T gyj = gy[o + j];
                                grAcc += gyj * si[j];
                                gkAcc += gi[j] * v[o + j];
                                gv[o + j] += gi[j] * ki;
                                gwAcc += gi[j] * si[j];
                                gi[j] = wi * gi[j] + ri * gyj;
                            }
                            gr[o + ii] = grAcc;
                            gk[o + ii] = gkAcc;
                            glogw[o + ii] = wi * gwAcc;
                        }
                    }
                }
            }
        });
        CpuSelectiveScan.Sum<T>(guParts, d.B, gut.Span<T>());
    }
}
