using ILGPU;
using ILGPU.Algorithms;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// Attention for one new token (T = 1) against a long KV cache, "flash-decoding" style: one query row
/// per head is too little work for a GPU if a single group walks the whole cache, so the cache is split
/// into chunks (grid X), each group reduces its chunk to a partial (max m, sum l, unnormalized output o),
/// and a second kernel merges the partials: M = max m_s, L = sum l_s e^(m_s - M),
/// out = sum o_s e^(m_s - M) / L, lse = M + log L.
///
/// In a group of up to <see cref="GroupSize"/> threads each of its w warps takes every w-th key of the chunk: lanes
/// split the head dim, the dot product is a warp sum, and every lane keeps the running softmax state.
/// Workspace: splits x B H x (D + 2) floats.
/// </summary>
public static class AttentionDecodeKernels
{
    public const int GroupSize = 128;
    private const int MaxWarps = GroupSize / 32;

    /// <summary>The largest head dim (8 elements per lane).</summary>
    public const int MaxD = 256;

    /// <summary>Grid (splits, B H). partialO (splits B H, D), partialM and partialL (splits B H), index bh * splits + split.</summary>
    public static void Split<TS, TE>(ArrayView<TS> q, ArrayView<TS> k, ArrayView<TS> v,
        ArrayView<float> partialO, ArrayView<float> partialM, ArrayView<float> partialL, int splits, AttentionParams p)
        where TS : unmanaged where TE : struct, IElement<TS>
    {
        int tid = Group.IdxX, threads = Group.DimX, split = Grid.IdxX, bh = Grid.IdxY;
        int lane = tid & 31, warp = tid >> 5, warps = threads >> 5;
        TE e = default;
        var qs = SharedMemory.Allocate<float>(MaxD);
        var warpO = SharedMemory.Allocate<float>(MaxWarps * MaxD);
        var warpM = SharedMemory.Allocate<float>(MaxWarps);
        var warpL = SharedMemory.Allocate<float>(MaxWarps);
        var acc = LocalMemory.Allocate<float>(MaxD / 32);
        int d = p.D, perLane = (d + 31) / 32;
        int end = p.VisibleEnd(0); // T = 1: every key (causal or not)
        int chunk = (end + splits - 1) / splits;
        int c0 = split * chunk, c1 = XMath.Min(end, c0 + chunk);
        int kvHead = p.KvHead(bh);
        for (int c = tid; c < d; c += threads) qs[c] = e.ToFloat(q[(long)bh * d + c]) * p.Scale;
        for (int u = 0; u < perLane; u++) acc[u] = 0f;
        Group.Barrier();
        float m = float.NegativeInfinity, l = 0f;
        for (int j = c0 + warp; j < c1; j += warps)
        {
            long kRow = p.KvRow(kvHead, j); // k and v may be a cache's strided view
            float part = 0f;
            for (int u = 0; u < perLane; u++)
            {
                int c = lane + 32 * u;
                if (c < d) part += qs[c] * e.ToFloat(k[kRow + c]);
            }
            float s = WarpSum(part);
            float mNew = XMath.Max(m, s);
            float correction = XMath.Exp(m - mNew);
            float w = XMath.Exp(s - mNew);
            l = l * correction + w;
            m = mNew;
            if (p.Dropout != 0) w *= p.Keep(bh, 0, j);
            for (int u = 0; u < perLane; u++)
            {
                int c = lane + 32 * u;
                acc[u] = acc[u] * correction + (c < d ? w * e.ToFloat(v[kRow + c]) : 0f);
            }
        }
        for (int u = 0; u < perLane; u++)
        {
            int c = lane + 32 * u;
            if (c < d) warpO[warp * MaxD + c] = acc[u];
        }
        if (lane == 0)
        {
            warpM[warp] = m;
            warpL[warp] = l;
        }
        Group.Barrier();
        // Merge the warps of the group into the chunk's partial.
        float big = float.NegativeInfinity;
        for (int w = 0; w < warps; w++) big = XMath.Max(big, warpM[w]);
        long slot = (long)bh * splits + split;
        for (int c = tid; c < d; c += threads)
        {
            float o = 0f;
            for (int w = 0; w < warps; w++)
                if (warpM[w] != float.NegativeInfinity) o += warpO[w * MaxD + c] * XMath.Exp(warpM[w] - big);
            partialO[slot * d + c] = o;
        }
        if (tid == 0)
        {
            float sum = 0f;
            for (int w = 0; w < warps; w++)
                if (warpM[w] != float.NegativeInfinity) sum += warpL[w] * XMath.Exp(warpM[w] - big);
            partialM[slot] = big;
            partialL[slot] = sum;
        }
    }

    /// <summary>Implicitly grouped over B H D: out[bh, c] and, for c = 0, lse[bh] from the partials.</summary>
    public static void Merge<TS, TE>(Index1D index, ArrayView<float> partialO, ArrayView<float> partialM, ArrayView<float> partialL,
        ArrayView<TS> o, ArrayView<float> lse, int splits, int d)
        where TS : unmanaged where TE : struct, IElement<TS>
    {
        TE e = default;
        int bh = index.X / d, c = index.X % d;
        long first = (long)bh * splits;
        float big = float.NegativeInfinity;
        for (int s = 0; s < splits; s++) big = XMath.Max(big, partialM[first + s]);
        float sum = 0f, acc = 0f;
        for (int s = 0; s < splits; s++)
        {
            float m = partialM[first + s];
            if (m == float.NegativeInfinity) continue; // an empty chunk
            float f = XMath.Exp(m - big);
            sum += partialL[first + s] * f;
            acc += partialO[(first + s) * d + c] * f;
        }
        o[index] = e.FromFloat(acc / sum);
        if (c == 0) lse[bh] = big + XMath.Log(sum);
    }

    /// <summary>Sum over the 32 lanes of a warp (butterfly: every lane gets the total).</summary>
    private static float WarpSum(float x)
    {
        x += Warp.ShuffleXor(x, 16);
        x += Warp.ShuffleXor(x, 8);
        x += Warp.ShuffleXor(x, 4);
        x += Warp.ShuffleXor(x, 2);
        x += Warp.ShuffleXor(x, 1);
        return x;
    }
}
