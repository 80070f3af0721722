using ILGPU;
using ILGPU.Algorithms;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// Attention without tensor cores: any head dim up to <see cref="MaxD"/>, float32 or 16-bit storage,
/// float32 arithmetic. The same flash-attention algorithm as the CPU op (CpuAttention) with one thread
/// per row: in the forward and dq kernels a thread owns a query row and walks key tiles staged in shared
/// memory; in the dk/dv kernel a thread owns a key row and walks query tiles. Nothing is accumulated
/// across threads, so there are no atomics and the results are deterministic. Memory beyond the inputs
/// and outputs: the row terms Di = dout . out of the backward (B H T floats).
///
/// Launch (explicitly grouped, <see cref="GroupSize"/> threads): forward and dq: grid (query tiles, B H);
/// dk/dv: grid (key tiles, B Hkv). Per-thread row buffers are local memory: this is the general path;
/// the tensor-core kernels (AttentionMmaKernels) are the fast one.
/// </summary>
internal static class AttentionSimtKernels
{
    /// <summary>Threads per group: the query rows (forward, dq) or keys (dk, dv) of one tile.</summary>
    public const int GroupSize = 64;

    /// <summary>Shared float32 staging: two tiles of <see cref="TileRows"/> rows of D.</summary>
    public const int StageFloats = 8192;

    /// <summary>The largest head dim (per-thread local buffers are this long).</summary>
    public const int MaxD = 256;

    /// <summary>Rows of the staged tiles (keys in forward and dq, queries in dk/dv).</summary>
    public static int TileRows(int d) => Math.Min(64, StageFloats / 2 / d);

    /// <summary>out, lse. Each thread: one query row, online softmax over key tiles of TileRows(D).</summary>
    public static void Forward<TS, TE>(ArrayView<TS> q, ArrayView<TS> k, ArrayView<TS> v, ArrayView<TS> o, ArrayView<float> lse, AttentionParams p)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        int tid = Group.IdxX, threads = Group.DimX, tile = Grid.IdxX, bh = Grid.IdxY;
        TE e = default;
        var stage = SharedMemory.Allocate<float>(StageFloats);
        var qr = LocalMemory.Allocate<float>(MaxD);
        var acc = LocalMemory.Allocate<float>(MaxD);
        var s = LocalMemory.Allocate<float>(64);
        int d = p.D, bk = TileRows(d), vOff = bk * d;
        int row = tile * threads + tid;
        bool live = row < p.T;
        long qBase = ((long)bh * p.T + row) * d;
        long kvBase = (long)p.KvHead(bh) * p.S * d;
        for (int c = 0; c < d; c++)
        {
            qr[c] = live ? e.Load(q[qBase + c]) * p.Scale : 0f;
            acc[c] = 0f;
        }
        int lastRow = XMath.Min(p.T, (tile + 1) * threads) - 1;
        int kLimit = p.VisibleEnd(lastRow), myEnd = live ? p.VisibleEnd(row) : 0;
        float m = float.NegativeInfinity, l = 0f;
        for (int j0 = 0; j0 < kLimit; j0 += bk)
        {
            int n = XMath.Min(bk, kLimit - j0);
            Group.Barrier();
            for (int x = tid; x < n * d; x += threads)
            {
                stage[x] = e.Load(k[kvBase + (long)j0 * d + x]);
                stage[vOff + x] = e.Load(v[kvBase + (long)j0 * d + x]);
            }
            Group.Barrier();
            int jEnd = XMath.Min(n, myEnd - j0);
            if (jEnd <= 0) continue;
            float tileMax = float.NegativeInfinity;
            for (int jj = 0; jj < jEnd; jj++)
            {
                float dot = 0f;
                for (int c = 0; c < d; c++) dot += qr[c] * stage[jj * d + c];
                s[jj] = dot;
                tileMax = XMath.Max(tileMax, dot);
            }
            float mNew = XMath.Max(m, tileMax);
            float correction = XMath.Exp(m - mNew); // 0 on the first tile
            l *= correction;
            for (int c = 0; c < d; c++) acc[c] *= correction;
            m = mNew;
            for (int jj = 0; jj < jEnd; jj++)
            {
                float w = XMath.Exp(s[jj] - m);
                l += w;
                if (p.Dropout != 0) w *= p.Keep(bh, row, j0 + jj);
                for (int c = 0; c < d; c++) acc[c] += w * stage[vOff + jj * d + c];
            }
        }
        if (!live) return;
        long lseIndex = (long)bh * p.T + row;
        if (l == 0f) // no visible key: out 0, lse +inf (the backward then sees P = 0)
        {
            for (int c = 0; c < d; c++) o[qBase + c] = e.Store(0f);
            lse[lseIndex] = float.PositiveInfinity;
            return;
        }
        float inv = 1f / l;
        for (int c = 0; c < d; c++) o[qBase + c] = e.Store(acc[c] * inv);
        lse[lseIndex] = m + XMath.Log(l);
    }

    /// <summary>dq. Each thread: one query row; per visible key dS = P (dP - Di), dq += scale dS k.</summary>
    public static void BackwardDq<TS, TE>(ArrayView<TS> q, ArrayView<TS> k, ArrayView<TS> v, ArrayView<TS> dout,
        ArrayView<float> lse, ArrayView<float> delta, ArrayView<TS> dq, AttentionParams p)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        int tid = Group.IdxX, threads = Group.DimX, tile = Grid.IdxX, bh = Grid.IdxY;
        TE e = default;
        var stage = SharedMemory.Allocate<float>(StageFloats);
        var qr = LocalMemory.Allocate<float>(MaxD);
        var dor = LocalMemory.Allocate<float>(MaxD);
        var acc = LocalMemory.Allocate<float>(MaxD);
        int d = p.D, bk = TileRows(d), vOff = bk * d;
        int row = tile * threads + tid;
        bool live = row < p.T;
        long qBase = ((long)bh * p.T + row) * d;
        long kvBase = (long)p.KvHead(bh) * p.S * d;
        for (int c = 0; c < d; c++)
        {
            qr[c] = live ? e.Load(q[qBase + c]) * p.Scale : 0f;
            dor[c] = live ? e.Load(dout[qBase + c]) : 0f;
            acc[c] = 0f;
        }
        float rowLse = live ? lse[(long)bh * p.T + row] : 0f, rowDelta = live ? delta[(long)bh * p.T + row] : 0f;
        int lastRow = XMath.Min(p.T, (tile + 1) * threads) - 1;
        int kLimit = p.VisibleEnd(lastRow), myEnd = live ? p.VisibleEnd(row) : 0;
        for (int j0 = 0; j0 < kLimit; j0 += bk)
        {
            int n = XMath.Min(bk, kLimit - j0);
            Group.Barrier();
            for (int x = tid; x < n * d; x += threads)
            {
                stage[x] = e.Load(k[kvBase + (long)j0 * d + x]);
                stage[vOff + x] = e.Load(v[kvBase + (long)j0 * d + x]);
            }
            Group.Barrier();
            int jEnd = XMath.Min(n, myEnd - j0);
            for (int jj = 0; jj < jEnd; jj++)
            {
                float s = 0f, dp = 0f;
                for (int c = 0; c < d; c++)
                {
                    s += qr[c] * stage[jj * d + c];
                    dp += dor[c] * stage[vOff + jj * d + c];
                }
                float w = XMath.Exp(s - rowLse);
                if (p.Dropout != 0) dp *= p.Keep(bh, row, j0 + jj);
                float ds = w * (dp - rowDelta);
                for (int c = 0; c < d; c++) acc[c] += ds * stage[jj * d + c];
            }
        }
        if (!live) return;
        for (int c = 0; c < d; c++) dq[qBase + c] = e.Store(acc[c] * p.Scale);
    }

    /// <summary>
    /// dk, dv. Each thread: one key row of one kv head, summed over the query heads of its group and
    /// every query that sees it: dv += P' dout, dk += scale dS q (P' = P with the dropout multiplier).
    /// </summary>
    public static void BackwardDkDv<TS, TE>(ArrayView<TS> q, ArrayView<TS> k, ArrayView<TS> v, ArrayView<TS> dout,
        ArrayView<float> lse, ArrayView<float> delta, ArrayView<TS> dk, ArrayView<TS> dv, AttentionParams p)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        int tid = Group.IdxX, threads = Group.DimX, tile = Grid.IdxX, kvh = Grid.IdxY;
        TE e = default;
        var stage = SharedMemory.Allocate<float>(StageFloats);
        var rowTerms = SharedMemory.Allocate<float>(128); // lse, then delta, of the staged query rows
        var kr = LocalMemory.Allocate<float>(MaxD);
        var vr = LocalMemory.Allocate<float>(MaxD);
        var dka = LocalMemory.Allocate<float>(MaxD);
        var dva = LocalMemory.Allocate<float>(MaxD);
        int d = p.D, bq = TileRows(d), doOff = bq * d, group = p.H / p.Hkv;
        int j = tile * threads + tid;
        bool live = j < p.S;
        long kBase = ((long)kvh * p.S + j) * d;
        for (int c = 0; c < d; c++)
        {
            kr[c] = live ? e.Load(k[kBase + c]) * p.Scale : 0f;
            vr[c] = live ? e.Load(v[kBase + c]) : 0f;
            dka[c] = 0f;
            dva[c] = 0f;
        }
        int firstRow = p.FirstRowSeeing(tile * threads); // the tile's first key is seen first
        int b = kvh / p.Hkv, hk = kvh % p.Hkv;
        for (int g = 0; g < group; g++)
        {
            int bh = b * p.H + hk * group + g;
            for (int i0 = firstRow; i0 < p.T; i0 += bq)
            {
                int n = XMath.Min(bq, p.T - i0);
                Group.Barrier();
                long rowBase = ((long)bh * p.T + i0) * d;
                for (int x = tid; x < n * d; x += threads)
                {
                    stage[x] = e.Load(q[rowBase + x]);
                    stage[doOff + x] = e.Load(dout[rowBase + x]);
                }
                for (int x = tid; x < n; x += threads)
                {
                    rowTerms[x] = lse[(long)bh * p.T + i0 + x];
                    rowTerms[64 + x] = delta[(long)bh * p.T + i0 + x];
                }
                Group.Barrier();
                if (!live) continue;
                for (int ii = 0; ii < n; ii++)
                {
                    int i = i0 + ii;
                    if (j >= p.VisibleEnd(i)) continue;
                    float s = 0f, dp = 0f;
                    for (int c = 0; c < d; c++)
                    {
                        s += stage[ii * d + c] * kr[c];
                        dp += stage[doOff + ii * d + c] * vr[c];
                    }
                    float w = XMath.Exp(s - rowTerms[ii]);
                    float keep = p.Dropout != 0 ? p.Keep(bh, i, j) : 1f;
                    float ds = w * (dp * keep - rowTerms[64 + ii]);
                    float wv = w * keep;
                    for (int c = 0; c < d; c++)
                    {
                        dva[c] += wv * stage[doOff + ii * d + c];
                        dka[c] += ds * stage[ii * d + c];
                    }
                }
            }
        }
        if (!live) return;
        for (int c = 0; c < d; c++)
        {
            dk[kBase + c] = e.Store(dka[c] * p.Scale);
            dv[kBase + c] = e.Store(dva[c]);
        }
    }
}
