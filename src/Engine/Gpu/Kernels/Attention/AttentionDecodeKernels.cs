using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using static ManagedTensor.Gpu.Kernels.Attention.AttentionTiles;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>A compile-time bound on the decode kernel's head dim: D is at most <see cref="MaxD"/> (smaller D are masked lanes).</summary>
internal interface IDecodeWidth
{
    int MaxD { get; }
}

internal struct DecodeUpTo64 : IDecodeWidth
{
    public readonly int MaxD => 64;
}

internal struct DecodeUpTo128 : IDecodeWidth
{
    public readonly int MaxD => 128;
}

internal struct DecodeUpTo256 : IDecodeWidth
{
    public readonly int MaxD => 256;
}

/// <summary>Eight floats: a lane's share of a row (two 16-byte vectors of float32, or one of 16-bit values).</summary>
internal struct Float8
{
    public Float4 Lo, Hi;
}

/// <summary>How the decode kernel reads 8 consecutive elements of a row as floats, with 16-byte loads (the element offset a multiple of 8).</summary>
internal interface IDecodeRow<TS> where TS : unmanaged
{
    Float8 Load(ArrayView<TS> x, long first, int left);
}

/// <summary>float32: two 16-byte loads (the second skipped past the row's end).</summary>
internal readonly struct F32Rows : IDecodeRow<float>
{
    public Float8 Load(ArrayView<float> x, long first, int left)
    {
        var f4 = x.Cast<Float4>();
        return new Float8 { Lo = f4[first >> 2], Hi = left > 4 ? f4[(first >> 2) + 1] : default };
    }
}

/// <summary>A 16-bit format: one 16-byte load of 8 values, unpacked with the format's conversion.</summary>
internal readonly struct HalfRows<TF> : IDecodeRow<ushort> where TF : struct, IHalfFormat
{
    public Float8 Load(ArrayView<ushort> x, long first, int left)
    {
        var u = x.Cast<U32x4>()[first >> 3];
        var f = default(TF);
        return new Float8
        {
            Lo = new Float4(f.Load((ushort)u.X), f.Load((ushort)(u.X >> 16)), f.Load((ushort)u.Y), f.Load((ushort)(u.Y >> 16))),
            Hi = new Float4(f.Load((ushort)u.Z), f.Load((ushort)(u.Z >> 16)), f.Load((ushort)u.W), f.Load((ushort)(u.W >> 16))),
        };
    }
}

/// <summary>
/// Attention for one new token (T = 1) against a long KV cache, "flash-decoding" style: one query row
/// per head is too little work for a GPU if a single group walks the whole cache, so the cache is split
/// into chunks (grid X), each group reduces its chunk to a partial (max m, sum l, unnormalized output o),
/// and a second kernel merges the partials: M = max m_s, L = sum l_s e^(m_s - M),
/// out = sum o_s e^(m_s - M) / L, lse = M + log L.
///
/// Within a chunk, a key row is read with 16-byte loads: a lane holds 8 of its 16-bit values (or 2 x 4
/// floats), so R = MaxD / 8 lanes cover a row and a warp takes 32 / R keys at once (4 at D = 64, 2 at
/// D = 128). Each lane keeps its 8 query values and 8 output accumulators in registers (no local
/// arrays); a key's score is the sum over its R lanes (log2 R xor-shuffles); every lane group runs its
/// own online softmax over its keys (base 2: one FFMA and one MUFU.EX2 per key and lane), and the groups
/// and then the warps are merged at the end. The loop has no division: key indices advance by a constant.
/// Needs D a multiple of 8 (16-bit) or 4 (float32) and 16-byte aligned rows; GpuAttention routes
/// anything else to the SIMT kernel. k and v are read through their strides (<see cref="AttentionParams.KvRow"/>),
/// so a KV cache's filled positions are attended in place, with no copy per token. Workspace: splits x B H x (D + 2)
/// floats.
/// </summary>
internal static class AttentionDecodeKernels
{
    public const int GroupSize = 128;
    private const int MaxWarps = GroupSize / 32;

    /// <summary>The largest head dim.</summary>
    public const int MaxD = 256;

    /// <summary>Whether the vectorized kernel takes rows of <paramref name="d"/> elements of <paramref name="elementBytes"/> bytes.</summary>
    public static bool Supports(int d, int elementBytes) => d > 0 && d <= MaxD && d * elementBytes % 16 == 0;

    /// <summary>The width instantiation for a head dim.</summary>
    public static int WidthFor(int d) => d <= 64 ? 64 : d <= 128 ? 128 : 256;

    /// <summary>Grid (splits, B H). partialO (splits B H, D), partialM and partialL (splits B H), index bh * splits + split.</summary>
    public static void Split<TS, TR, TW, TDr>(ArrayView<TS> q, ArrayView<TS> k, ArrayView<TS> v,
        ArrayView<float> partialO, ArrayView<float> partialM, ArrayView<float> partialL, int splits, AttentionParams p)
        where TS : unmanaged where TR : struct, IDecodeRow<TS> where TW : struct, IDecodeWidth where TDr : struct, IDropout
    {
        int tid = Group.IdxX, threads = Group.DimX, split = Grid.IdxX, bh = Grid.IdxY;
        int lane = tid & 31, warp = tid >> 5, warps = threads >> 5;
        int maxD = default(TW).MaxD;
        int rowLanes = XMath.Min(32, maxD / 8);                 // lanes per key row: each holds 8 of its values
        int groups = 32 / rowLanes;                             // key rows a warp reads at once
        int sub = lane & (rowLanes - 1), group = lane / rowLanes; // rowLanes is a power of two: a shift
        int c0 = sub * 8;                                       // the lane's first element of a row
        int d = p.D;
        var warpO = SharedMemory.Allocate<float>(MaxWarps * MaxD);
        var warpM = SharedMemory.Allocate<float>(MaxWarps);
        var warpL = SharedMemory.Allocate<float>(MaxWarps);

        int end = p.VisibleEnd(0);                              // T = 1: every key (causal or not)
        int chunk = (end + splits - 1) / splits;                // once per block
        int j0 = split * chunk, j1 = XMath.Min(end, j0 + chunk);
        long kvBase = p.KvRow(p.KvHead(bh), 0), row = p.KvRowStride; // k and v may be a cache's views: rows row apart
        float scale = p.Scale * AttentionMmaKernels.Log2E;
        // Lanes past the head dim (D below the width) read their row's first 8 values, which their zero query values cancel.
        bool live = c0 < d;
        int lc = live ? c0 : 0;
        var qv = live ? default(TR).Load(q, (long)bh * d + lc, d - lc) : default;

        float m = float.NegativeInfinity, l = 0f;
        Float8 acc = default;
        int stride = warps * groups, jw = j0 + warp * groups;
        // Every lane of a warp runs the same iterations (the row sums shuffle across the warp; a lane that left the loop
        // early would never arrive); a lane group whose key is past the chunk computes a score and ignores it.
        // The element index advances by a constant: the loop holds no multiplication by D and, above all, not the
        // divisions of KvHead (ILGPU places a value next to its only use, which would put them inside the loop).
        long at = kvBase + (jw + group) * row + lc, step = stride * row;
        for (; jw < j1; jw += stride, at += step)
        {
            int j = jw + group;
            bool valid = j < j1;
            var kv = valid ? default(TR).Load(k, at, d - lc) : default;
            float s = RowSum(Dot(qv, kv), rowLanes) * scale;    // the score in base-2 units
            if (valid)
            {
                float mNew = XMath.Max(m, s);
                float correction = FastExp2(m - mNew), w = FastExp2(s - mNew);
                l = l * correction + w;
                m = mNew;
                if (default(TDr).Enabled) w *= p.Keep(bh, 0, j);
                acc = Fma(acc, correction, w, default(TR).Load(v, at, d - lc));
            }
        }

        // Merge the lane groups of the warp (each ran its own softmax over its keys), then the warps of the group.
        for (int offset = rowLanes; offset < 32; offset <<= 1)
        {
            float mo = Warp.ShuffleXor(m, offset), lo = Warp.ShuffleXor(l, offset);
            var ao = ShuffleXor(acc, offset);
            float mNew = XMath.Max(m, mo);
            float a = m == float.NegativeInfinity ? 0f : FastExp2(m - mNew), b = mo == float.NegativeInfinity ? 0f : FastExp2(mo - mNew);
            l = l * a + lo * b;
            acc = Combine(acc, a, ao, b);
            m = mNew;
        }
        if (group == 0) StoreRow(warpO, warp * MaxD + c0, acc, d - c0);
        if (lane == 0)
        {
            warpM[warp] = m;
            warpL[warp] = l;
        }
        Group.Barrier();
        float big = float.NegativeInfinity;
        for (int w = 0; w < warps; w++) big = XMath.Max(big, warpM[w]);
        long slot = (long)bh * splits + split;
        for (int c = tid; c < d; c += threads)
        {
            float o = 0f;
            for (int w = 0; w < warps; w++)
                if (warpM[w] != float.NegativeInfinity) o += warpO[w * MaxD + c] * FastExp2(warpM[w] - big);
            partialO[slot * d + c] = o;
        }
        if (tid == 0)
        {
            float sum = 0f;
            for (int w = 0; w < warps; w++)
                if (warpM[w] != float.NegativeInfinity) sum += warpL[w] * FastExp2(warpM[w] - big);
            partialM[slot] = big == float.NegativeInfinity ? big : big * AttentionMmaKernels.Ln2; // back to natural units
            partialL[slot] = sum;
        }
    }

    /// <summary>
    /// Out and lse from the partials, grid-stride over B H D (explicitly grouped): out[bh, c] and, for c = 0, lse[bh].
    /// </summary>
    public static void Merge<TS, TE>(ArrayView<float> partialO, ArrayView<float> partialM, ArrayView<float> partialL,
        ArrayView<TS> o, ArrayView<float> lse, int splits, int d, int n)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        TE e = default;
        int stride = Grid.DimX * Group.DimX;
        for (int index = Grid.IdxX * Group.DimX + Group.IdxX; index < n; index += stride)
        {
            int bh = index / d, c = index - bh * d;
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
            o[index] = e.Store(acc / sum);
            if (c == 0) lse[bh] = big + XMath.Log(sum);
        }
    }

    private static float Dot(Float8 a, Float8 b) =>
        a.Lo.X * b.Lo.X + a.Lo.Y * b.Lo.Y + a.Lo.Z * b.Lo.Z + a.Lo.W * b.Lo.W + a.Hi.X * b.Hi.X + a.Hi.Y * b.Hi.Y + a.Hi.Z * b.Hi.Z + a.Hi.W * b.Hi.W;

    /// <summary>
    /// The sum over the <paramref name="rowLanes"/> lanes of a row group (xor-shuffles within the group), unrolled:
    /// rowLanes is a compile-time constant of the instantiation, so the untaken steps vanish.
    /// </summary>
    private static float RowSum(float x, int rowLanes)
    {
        if (rowLanes > 16) x += Warp.ShuffleXor(x, 16);
        if (rowLanes > 8) x += Warp.ShuffleXor(x, 8);
        if (rowLanes > 4) x += Warp.ShuffleXor(x, 4);
        if (rowLanes > 2) x += Warp.ShuffleXor(x, 2);
        if (rowLanes > 1) x += Warp.ShuffleXor(x, 1);
        return x;
    }

    private static Float8 Fma(Float8 acc, float correction, float w, Float8 v) => new()
    {
        Lo = new Float4(acc.Lo.X * correction + w * v.Lo.X, acc.Lo.Y * correction + w * v.Lo.Y, acc.Lo.Z * correction + w * v.Lo.Z, acc.Lo.W * correction + w * v.Lo.W),
        Hi = new Float4(acc.Hi.X * correction + w * v.Hi.X, acc.Hi.Y * correction + w * v.Hi.Y, acc.Hi.Z * correction + w * v.Hi.Z, acc.Hi.W * correction + w * v.Hi.W),
    };

    private static Float8 Combine(Float8 x, float a, Float8 y, float b) => Fma(Scale8(x, a), 1f, b, y);

    private static Float8 Scale8(Float8 x, float a) => new()
    {
        Lo = new Float4(x.Lo.X * a, x.Lo.Y * a, x.Lo.Z * a, x.Lo.W * a),
        Hi = new Float4(x.Hi.X * a, x.Hi.Y * a, x.Hi.Z * a, x.Hi.W * a),
    };

    private static Float8 ShuffleXor(Float8 x, int offset) => new()
    {
        Lo = new Float4(Warp.ShuffleXor(x.Lo.X, offset), Warp.ShuffleXor(x.Lo.Y, offset), Warp.ShuffleXor(x.Lo.Z, offset), Warp.ShuffleXor(x.Lo.W, offset)),
        Hi = new Float4(Warp.ShuffleXor(x.Hi.X, offset), Warp.ShuffleXor(x.Hi.Y, offset), Warp.ShuffleXor(x.Hi.Z, offset), Warp.ShuffleXor(x.Hi.W, offset)),
    };

    /// <summary>Stores the lane's 8 accumulators at <paramref name="at"/> (those of them below the head dim).</summary>
    private static void StoreRow(ArrayView<float> dst, int at, Float8 x, int left)
    {
        if (left > 0) dst[at] = x.Lo.X;
        if (left > 1) dst[at + 1] = x.Lo.Y;
        if (left > 2) dst[at + 2] = x.Lo.Z;
        if (left > 3) dst[at + 3] = x.Lo.W;
        if (left > 4) dst[at + 4] = x.Hi.X;
        if (left > 5) dst[at + 5] = x.Hi.Y;
        if (left > 6) dst[at + 6] = x.Hi.Z;
        if (left > 7) dst[at + 7] = x.Hi.W;
    }
}
