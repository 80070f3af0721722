using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// How the tensor-core attention kernels multiply tiles: <see cref="TensorCoreMath{TE}"/> with
/// mma.sync on CUDA, <see cref="PlainMath{TE}"/> with float32 dot products over the same shared tiles on
/// any accelerator (the CPU one in tests). A type parameter of the kernels rather than a
/// CudaAsm.IsSupported test inside them: ILGPU emits both sides of that test into the PTX (ptxas drops
/// the dead one), which made these kernels 0.5-2 MB of PTX; this way each kernel holds only its path.
/// </summary>
internal interface IMmaMath<TE> where TE : struct, IHalfFormat
{
    /// <summary>S (16 x 64) = A (rows warpRow and warpRow + 8 of aSm) B^T (64 rows of bSm), over D.</summary>
    Frags8 Product(ArrayView<uint> aSm, ArrayView<uint> bSm, int warpRow, int g, int t, int d);

    /// <summary>
    /// o (16 x 64 columns from dtBase * 8) += P V, P the 16 x 64 fragments s, vtSm holding V^T (rows =
    /// columns of o, 64 keys each). The plain path reads P from pSm instead (see <see cref="ReadsWeightsFromShared"/>).
    /// </summary>
    Frags8 Accumulate(Frags8 o, Frags8 s, ArrayView<uint> vtSm, ArrayView<uint> pSm, int warpRow, int dtBase, int g, int t);

    /// <summary>Whether <see cref="Accumulate"/> needs P in shared memory first (MmaTiles.StoreP between two group barriers).</summary>
    bool ReadsWeightsFromShared { get; }

    /// <summary>Two floats rounded to a packed 16-bit pair (one cvt, or integer code).</summary>
    uint Pack(float lo, float hi);
}

internal readonly struct TensorCoreMath<TE> : IMmaMath<TE> where TE : struct, IHalfFormat
{
    public bool ReadsWeightsFromShared => false;

    public uint Pack(float lo, float hi) => default(TE).Pack(lo, hi);

    public Frags8 Product(ArrayView<uint> aSm, ArrayView<uint> bSm, int warpRow, int g, int t, int d)
    {
        TE e = default;
        int rowPairs = d / 2;
        Frags8 s = default;
        for (int ks = 0; ks < d / 16; ks++)
        {
            int pa = ks * 8 + t; // the word of k = 16 ks + 2t
            uint a0 = aSm[MmaTiles.Swz(warpRow, pa, rowPairs)], a1 = aSm[MmaTiles.Swz(warpRow + 8, pa, rowPairs)];
            uint a2 = aSm[MmaTiles.Swz(warpRow, pa + 4, rowPairs)], a3 = aSm[MmaTiles.Swz(warpRow + 8, pa + 4, rowPairs)];
            s = MmaTiles.QkStep(e, s, a0, a1, a2, a3, bSm, pa, g, rowPairs);
        }
        return s;
    }

    public Frags8 Accumulate(Frags8 o, Frags8 s, ArrayView<uint> vtSm, ArrayView<uint> pSm, int warpRow, int dtBase, int g, int t)
    {
        TE e = default;
        o = MmaTiles.PvStep(e, o, s.F0, s.F1, vtSm, 0, dtBase, g, t);
        o = MmaTiles.PvStep(e, o, s.F2, s.F3, vtSm, 1, dtBase, g, t);
        o = MmaTiles.PvStep(e, o, s.F4, s.F5, vtSm, 2, dtBase, g, t);
        return MmaTiles.PvStep(e, o, s.F6, s.F7, vtSm, 3, dtBase, g, t);
    }
}

internal readonly struct PlainMath<TE> : IMmaMath<TE> where TE : struct, IHalfFormat
{
    public bool ReadsWeightsFromShared => true;

    public uint Pack(float lo, float hi) => default(TE).PackBits(lo, hi);

    public Frags8 Product(ArrayView<uint> aSm, ArrayView<uint> bSm, int warpRow, int g, int t, int d)
        => MmaTiles.QkPlain(default(TE), aSm, bSm, warpRow, t, d);

    public Frags8 Accumulate(Frags8 o, Frags8 s, ArrayView<uint> vtSm, ArrayView<uint> pSm, int warpRow, int dtBase, int g, int t)
        => MmaTiles.PvPlain(default(TE), o, pSm, vtSm, warpRow, dtBase, t);
}

/// <summary>
/// The warp-level pieces of the tensor-core attention kernels (see AttentionMmaKernels for the layouts):
/// staging 16-bit tiles into swizzled shared memory, one k-step of S = A B^T (<see cref="QkStep{TE}"/>),
/// one 16-key step of O += P V from repacked accumulators (<see cref="PvStep{TE}"/>), their plain twins,
/// and the softmax bookkeeping on fragments. Fragments pass by value (ILGPU keeps them in registers).
/// </summary>
internal static class MmaTiles
{
    /// <summary>Word (pair) cp of row r in a swizzled tile of rowPairs words per row (rowPairs >= 32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Swz(int r, int cp, int rowPairs) => r * rowPairs + ((((cp >> 2) ^ (r & 7))) << 2) + (cp & 3);

    /// <summary>Rows [0, 64) of a (rows, rowPairs words) global block into a swizzled tile; rows at or past n are zero.</summary>
    internal static void StageRows(ArrayView<uint> src, long first, int n, int rowPairs, ArrayView<uint> dst, int tid, int threads, int rows = 64)
    {
        for (int x = tid; x < rows * rowPairs; x += threads)
        {
            int r = x / rowPairs, cp = x - r * rowPairs;
            dst[Swz(r, cp, rowPairs)] = r < n ? src[first + (long)r * rowPairs + cp] : 0u;
        }
    }

    /// <summary>
    /// 64 rows of a (rows, D) block transposed into a swizzled (D, 64) tile: a thread takes rows
    /// (2 kp, 2 kp + 1) x columns (2 dp, 2 dp + 1) and writes two transposed pairs. Rows at or past n are zero.
    /// </summary>
    internal static void StageTransposed(ArrayView<uint> src, long first, int n, int rowPairs, ArrayView<uint> dst, int tid, int threads)
    {
        for (int x = tid; x < 32 * rowPairs; x += threads)
        {
            int kp = x / rowPairs, dp = x - kp * rowPairs;
            int row = 2 * kp;
            uint w0 = row < n ? src[first + (long)row * rowPairs + dp] : 0u;          // (d, d + 1) of row
            uint w1 = row + 1 < n ? src[first + (long)(row + 1) * rowPairs + dp] : 0u;
            dst[Swz(2 * dp, kp, 32)] = (w0 & 0xFFFFu) | (w1 << 16);
            dst[Swz(2 * dp + 1, kp, 32)] = (w0 >> 16) | (w1 & 0xFFFF0000u);
        }
    }

    // ---- S = Q K^T ----

    /// <summary>One mma.m16n8k16 on attention's fragment type (see <see cref="IHalfFormat.Mma"/> for the layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Frag Mma<TE>(TE e, Frag c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) where TE : struct, IHalfFormat
    {
        var d = e.Mma(new U32x4 { X = a0, Y = a1, Z = a2, W = a3 }, new U32x2 { X = b0, Y = b1 }, new Float4(c.C0, c.C1, c.C2, c.C3));
        return new Frag { C0 = d.X, C1 = d.Y, C2 = d.Z, C3 = d.W };
    }

    /// <summary>One k-step (16 of D) of S for all 8 key fragments: B of fragment nt is keys nt*8 + g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Frags8 QkStep<TE>(TE e, Frags8 s, uint a0, uint a1, uint a2, uint a3, ArrayView<uint> kSm, int pa, int g, int rowPairs)
        where TE : struct, IHalfFormat
    {
        s.F0 = Mma(e, s.F0, a0, a1, a2, a3, kSm[Swz(g, pa, rowPairs)], kSm[Swz(g, pa + 4, rowPairs)]);
        s.F1 = Mma(e, s.F1, a0, a1, a2, a3, kSm[Swz(8 + g, pa, rowPairs)], kSm[Swz(8 + g, pa + 4, rowPairs)]);
        s.F2 = Mma(e, s.F2, a0, a1, a2, a3, kSm[Swz(16 + g, pa, rowPairs)], kSm[Swz(16 + g, pa + 4, rowPairs)]);
        s.F3 = Mma(e, s.F3, a0, a1, a2, a3, kSm[Swz(24 + g, pa, rowPairs)], kSm[Swz(24 + g, pa + 4, rowPairs)]);
        s.F4 = Mma(e, s.F4, a0, a1, a2, a3, kSm[Swz(32 + g, pa, rowPairs)], kSm[Swz(32 + g, pa + 4, rowPairs)]);
        s.F5 = Mma(e, s.F5, a0, a1, a2, a3, kSm[Swz(40 + g, pa, rowPairs)], kSm[Swz(40 + g, pa + 4, rowPairs)]);
        s.F6 = Mma(e, s.F6, a0, a1, a2, a3, kSm[Swz(48 + g, pa, rowPairs)], kSm[Swz(48 + g, pa + 4, rowPairs)]);
        s.F7 = Mma(e, s.F7, a0, a1, a2, a3, kSm[Swz(56 + g, pa, rowPairs)], kSm[Swz(56 + g, pa + 4, rowPairs)]);
        return s;
    }

    /// <summary>The plain path: each lane computes its own fragment entries as dot products over the tiles.</summary>
    internal static Frags8 QkPlain<TE>(TE e, ArrayView<uint> qSm, ArrayView<uint> kSm, int warpRow, int t, int d)
        where TE : struct, IHalfFormat
    {
        Frags8 s;
        s.F0 = QkFragPlain(e, qSm, kSm, warpRow, 2 * t, d);
        s.F1 = QkFragPlain(e, qSm, kSm, warpRow, 8 + 2 * t, d);
        s.F2 = QkFragPlain(e, qSm, kSm, warpRow, 16 + 2 * t, d);
        s.F3 = QkFragPlain(e, qSm, kSm, warpRow, 24 + 2 * t, d);
        s.F4 = QkFragPlain(e, qSm, kSm, warpRow, 32 + 2 * t, d);
        s.F5 = QkFragPlain(e, qSm, kSm, warpRow, 40 + 2 * t, d);
        s.F6 = QkFragPlain(e, qSm, kSm, warpRow, 48 + 2 * t, d);
        s.F7 = QkFragPlain(e, qSm, kSm, warpRow, 56 + 2 * t, d);
        return s;
    }

    internal static Frag QkFragPlain<TE>(TE e, ArrayView<uint> qSm, ArrayView<uint> kSm, int row, int key, int d)
        where TE : struct, IHalfFormat
    {
        int rp = d / 2;
        Frag f = default;
        for (int cp = 0; cp < rp; cp++)
        {
            uint qa = qSm[Swz(row, cp, rp)], qb = qSm[Swz(row + 8, cp, rp)];
            uint k0 = kSm[Swz(key, cp, rp)], k1 = kSm[Swz(key + 1, cp, rp)];
            f.C0 += Dot2(e, qa, k0);
            f.C1 += Dot2(e, qa, k1);
            f.C2 += Dot2(e, qb, k0);
            f.C3 += Dot2(e, qb, k1);
        }
        return f;
    }

    /// <summary>The dot product of two packed pairs, in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot2<TE>(TE e, uint x, uint y) where TE : struct, IHalfFormat
        => e.Load((ushort)x) * e.Load((ushort)y) + e.Load((ushort)(x >> 16)) * e.Load((ushort)(y >> 16));

    // ---- softmax on fragments ----

    /// <summary>s * scale; keys at or past a row's visible end become -inf (only on tiles that need it).</summary>
    internal static Frags8 ScaleMask(Frags8 s, float scale, bool mask, int key0, int endA, int endB)
    {
        s.F0 = ScaleMask(s.F0, scale, mask, key0, endA, endB);
        s.F1 = ScaleMask(s.F1, scale, mask, key0 + 8, endA, endB);
        s.F2 = ScaleMask(s.F2, scale, mask, key0 + 16, endA, endB);
        s.F3 = ScaleMask(s.F3, scale, mask, key0 + 24, endA, endB);
        s.F4 = ScaleMask(s.F4, scale, mask, key0 + 32, endA, endB);
        s.F5 = ScaleMask(s.F5, scale, mask, key0 + 40, endA, endB);
        s.F6 = ScaleMask(s.F6, scale, mask, key0 + 48, endA, endB);
        s.F7 = ScaleMask(s.F7, scale, mask, key0 + 56, endA, endB);
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Frag ScaleMask(Frag f, float scale, bool mask, int key, int endA, int endB)
    {
        f.C0 = mask && key >= endA ? float.NegativeInfinity : f.C0 * scale;
        f.C1 = mask && key + 1 >= endA ? float.NegativeInfinity : f.C1 * scale;
        f.C2 = mask && key >= endB ? float.NegativeInfinity : f.C2 * scale;
        f.C3 = mask && key + 1 >= endB ? float.NegativeInfinity : f.C3 * scale;
        return f;
    }

    internal static float RowMaxA(Frags8 s)
        => XMath.Max(XMath.Max(XMath.Max(Max(s.F0.C0, s.F0.C1), Max(s.F1.C0, s.F1.C1)), XMath.Max(Max(s.F2.C0, s.F2.C1), Max(s.F3.C0, s.F3.C1))),
            XMath.Max(XMath.Max(Max(s.F4.C0, s.F4.C1), Max(s.F5.C0, s.F5.C1)), XMath.Max(Max(s.F6.C0, s.F6.C1), Max(s.F7.C0, s.F7.C1))));

    internal static float RowMaxB(Frags8 s)
        => XMath.Max(XMath.Max(XMath.Max(Max(s.F0.C2, s.F0.C3), Max(s.F1.C2, s.F1.C3)), XMath.Max(Max(s.F2.C2, s.F2.C3), Max(s.F3.C2, s.F3.C3))),
            XMath.Max(XMath.Max(Max(s.F4.C2, s.F4.C3), Max(s.F5.C2, s.F5.C3)), XMath.Max(Max(s.F6.C2, s.F6.C3), Max(s.F7.C2, s.F7.C3))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Max(float a, float b) => XMath.Max(a, b);

    /// <summary>Entrywise product of two tiles (dropout multipliers).</summary>
    internal static Frags8 Multiply(Frags8 a, Frags8 b)
    {
        a.F0 = Multiply(a.F0, b.F0); a.F1 = Multiply(a.F1, b.F1); a.F2 = Multiply(a.F2, b.F2); a.F3 = Multiply(a.F3, b.F3);
        a.F4 = Multiply(a.F4, b.F4); a.F5 = Multiply(a.F5, b.F5); a.F6 = Multiply(a.F6, b.F6); a.F7 = Multiply(a.F7, b.F7);
        return a;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Frag Multiply(Frag a, Frag b) => new() { C0 = a.C0 * b.C0, C1 = a.C1 * b.C1, C2 = a.C2 * b.C2, C3 = a.C3 * b.C3 };

    /// <summary>Max over the 4 lanes of a quad (the lanes that share a row).</summary>
    internal static float QuadMax(float x)
    {
        x = XMath.Max(x, Warp.ShuffleXor(x, 1));
        return XMath.Max(x, Warp.ShuffleXor(x, 2));
    }

    /// <summary>Sum over the 4 lanes of a quad.</summary>
    internal static float QuadSum(float x)
    {
        x += Warp.ShuffleXor(x, 1);
        return x + Warp.ShuffleXor(x, 2);
    }

    internal static float RowSumA(Frags8 s)
        => s.F0.C0 + s.F0.C1 + s.F1.C0 + s.F1.C1 + s.F2.C0 + s.F2.C1 + s.F3.C0 + s.F3.C1
         + s.F4.C0 + s.F4.C1 + s.F5.C0 + s.F5.C1 + s.F6.C0 + s.F6.C1 + s.F7.C0 + s.F7.C1;

    internal static float RowSumB(Frags8 s)
        => s.F0.C2 + s.F0.C3 + s.F1.C2 + s.F1.C3 + s.F2.C2 + s.F2.C3 + s.F3.C2 + s.F3.C3
         + s.F4.C2 + s.F4.C3 + s.F5.C2 + s.F5.C3 + s.F6.C2 + s.F6.C3 + s.F7.C2 + s.F7.C3;

    /// <summary>exp2(s - base) per row (row A: C0, C1; row B: C2, C3); -inf gives 0.</summary>
    internal static Frags8 Exp2(Frags8 s, float baseA, float baseB)
    {
        s.F0 = Exp2(s.F0, baseA, baseB); s.F1 = Exp2(s.F1, baseA, baseB);
        s.F2 = Exp2(s.F2, baseA, baseB); s.F3 = Exp2(s.F3, baseA, baseB);
        s.F4 = Exp2(s.F4, baseA, baseB); s.F5 = Exp2(s.F5, baseA, baseB);
        s.F6 = Exp2(s.F6, baseA, baseB); s.F7 = Exp2(s.F7, baseA, baseB);
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Frag Exp2(Frag f, float baseA, float baseB)
    {
        f.C0 = XMath.Exp2(f.C0 - baseA);
        f.C1 = XMath.Exp2(f.C1 - baseA);
        f.C2 = XMath.Exp2(f.C2 - baseB);
        f.C3 = XMath.Exp2(f.C3 - baseB);
        return f;
    }

    /// <summary>Rows A and B of an output accumulator times their softmax corrections.</summary>
    internal static Frags8 Scale(Frags8 o, float a, float b)
    {
        o.F0 = Scale(o.F0, a, b); o.F1 = Scale(o.F1, a, b); o.F2 = Scale(o.F2, a, b); o.F3 = Scale(o.F3, a, b);
        o.F4 = Scale(o.F4, a, b); o.F5 = Scale(o.F5, a, b); o.F6 = Scale(o.F6, a, b); o.F7 = Scale(o.F7, a, b);
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Frag Scale(Frag f, float a, float b)
    {
        f.C0 *= a; f.C1 *= a; f.C2 *= b; f.C3 *= b;
        return f;
    }

    /// <summary>The dropout multipliers of the tile's weights (rows A and B, keys key0 + 8 nt + {0, 1}).</summary>
    internal static Frags8 Drop(Frags8 s, AttentionParams p, int bh, int rowA, int rowB, int key0)
    {
        s.F0 = Drop(s.F0, p, bh, rowA, rowB, key0); s.F1 = Drop(s.F1, p, bh, rowA, rowB, key0 + 8);
        s.F2 = Drop(s.F2, p, bh, rowA, rowB, key0 + 16); s.F3 = Drop(s.F3, p, bh, rowA, rowB, key0 + 24);
        s.F4 = Drop(s.F4, p, bh, rowA, rowB, key0 + 32); s.F5 = Drop(s.F5, p, bh, rowA, rowB, key0 + 40);
        s.F6 = Drop(s.F6, p, bh, rowA, rowB, key0 + 48); s.F7 = Drop(s.F7, p, bh, rowA, rowB, key0 + 56);
        return s;
    }

    internal static Frag Drop(Frag f, AttentionParams p, int bh, int rowA, int rowB, int key)
    {
        // Masked entries are already 0; rows and keys past the ends are never stored.
        if (f.C0 != 0f) f.C0 *= p.Keep(bh, rowA, key);
        if (f.C1 != 0f) f.C1 *= p.Keep(bh, rowA, key + 1);
        if (f.C2 != 0f) f.C2 *= p.Keep(bh, rowB, key);
        if (f.C3 != 0f) f.C3 *= p.Keep(bh, rowB, key + 1);
        return f;
    }

    // ---- O += P V ----

    /// <summary>
    /// Keys 16 kk .. 16 kk + 15 of O += P V for 8 output fragments (D columns dtBase*8 .. +63):
    /// the P fragments (sa: keys 16 kk + 2t.., sb: keys 16 kk + 8 + 2t..) repacked as A; B of output
    /// fragment dt is V^T row (dtBase + dt) * 8 + g.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Frags8 PvStep<TE>(TE e, Frags8 o, Frag sa, Frag sb, ArrayView<uint> vSm, int kk, int dtBase, int g, int t)
        where TE : struct, IHalfFormat
    {
        uint a0 = e.Pack(sa.C0, sa.C1), a1 = e.Pack(sa.C2, sa.C3), a2 = e.Pack(sb.C0, sb.C1), a3 = e.Pack(sb.C2, sb.C3);
        int pa = kk * 8 + t;
        int row = dtBase * 8 + g;
        o.F0 = Mma(e, o.F0, a0, a1, a2, a3, vSm[Swz(row, pa, 32)], vSm[Swz(row, pa + 4, 32)]);
        o.F1 = Mma(e, o.F1, a0, a1, a2, a3, vSm[Swz(row + 8, pa, 32)], vSm[Swz(row + 8, pa + 4, 32)]);
        o.F2 = Mma(e, o.F2, a0, a1, a2, a3, vSm[Swz(row + 16, pa, 32)], vSm[Swz(row + 16, pa + 4, 32)]);
        o.F3 = Mma(e, o.F3, a0, a1, a2, a3, vSm[Swz(row + 24, pa, 32)], vSm[Swz(row + 24, pa + 4, 32)]);
        o.F4 = Mma(e, o.F4, a0, a1, a2, a3, vSm[Swz(row + 32, pa, 32)], vSm[Swz(row + 32, pa + 4, 32)]);
        o.F5 = Mma(e, o.F5, a0, a1, a2, a3, vSm[Swz(row + 40, pa, 32)], vSm[Swz(row + 40, pa + 4, 32)]);
        o.F6 = Mma(e, o.F6, a0, a1, a2, a3, vSm[Swz(row + 48, pa, 32)], vSm[Swz(row + 48, pa + 4, 32)]);
        o.F7 = Mma(e, o.F7, a0, a1, a2, a3, vSm[Swz(row + 56, pa, 32)], vSm[Swz(row + 56, pa + 4, 32)]);
        return o;
    }

    /// <summary>The plain path's P exchange: the lane's weights, rounded to 16 bits as the mma path does, at (row, key pair).</summary>
    internal static void StoreP<TE>(TE e, Frags8 s, ArrayView<uint> pSm, int warpRow, int t) where TE : struct, IHalfFormat
    {
        StoreP(e, s.F0, pSm, warpRow, t); StoreP(e, s.F1, pSm, warpRow, 4 + t);
        StoreP(e, s.F2, pSm, warpRow, 8 + t); StoreP(e, s.F3, pSm, warpRow, 12 + t);
        StoreP(e, s.F4, pSm, warpRow, 16 + t); StoreP(e, s.F5, pSm, warpRow, 20 + t);
        StoreP(e, s.F6, pSm, warpRow, 24 + t); StoreP(e, s.F7, pSm, warpRow, 28 + t);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreP<TE>(TE e, Frag f, ArrayView<uint> pSm, int row, int pair) where TE : struct, IHalfFormat
    {
        pSm[row * 32 + pair] = e.PackBits(f.C0, f.C1);
        pSm[(row + 8) * 32 + pair] = e.PackBits(f.C2, f.C3);
    }

    internal static Frags8 PvPlain<TE>(TE e, Frags8 o, ArrayView<uint> pSm, ArrayView<uint> vSm, int warpRow, int dtBase, int t)
        where TE : struct, IHalfFormat
    {
        int col = dtBase * 8 + 2 * t;
        o.F0 = PvFragPlain(e, o.F0, pSm, vSm, warpRow, col);
        o.F1 = PvFragPlain(e, o.F1, pSm, vSm, warpRow, col + 8);
        o.F2 = PvFragPlain(e, o.F2, pSm, vSm, warpRow, col + 16);
        o.F3 = PvFragPlain(e, o.F3, pSm, vSm, warpRow, col + 24);
        o.F4 = PvFragPlain(e, o.F4, pSm, vSm, warpRow, col + 32);
        o.F5 = PvFragPlain(e, o.F5, pSm, vSm, warpRow, col + 40);
        o.F6 = PvFragPlain(e, o.F6, pSm, vSm, warpRow, col + 48);
        o.F7 = PvFragPlain(e, o.F7, pSm, vSm, warpRow, col + 56);
        return o;
    }

    internal static Frag PvFragPlain<TE>(TE e, Frag f, ArrayView<uint> pSm, ArrayView<uint> vSm, int row, int col)
        where TE : struct, IHalfFormat
    {
        for (int kp = 0; kp < 32; kp++) // 64 keys
        {
            uint pa = pSm[row * 32 + kp], pb = pSm[(row + 8) * 32 + kp];
            uint v0 = vSm[Swz(col, kp, 32)], v1 = vSm[Swz(col + 1, kp, 32)];
            f.C0 += Dot2(e, pa, v0);
            f.C1 += Dot2(e, pa, v1);
            f.C2 += Dot2(e, pb, v0);
            f.C3 += Dot2(e, pb, v1);
        }
        return f;
    }

    /// <summary>Row A (C0, C1) or row B (C2, C3) of 8 output fragments, times inv, packed: word t + 4 dt of the row.</summary>
    internal static void StoreRow<TE, TM>(TM math, Frags8 o, ArrayView<uint> o32, long word, float inv, bool upper) where TE : struct, IHalfFormat where TM : struct, IMmaMath<TE>
    {
        o32[word] = PackRow<TE, TM>(math, o.F0, inv, upper);
        o32[word + 4] = PackRow<TE, TM>(math, o.F1, inv, upper);
        o32[word + 8] = PackRow<TE, TM>(math, o.F2, inv, upper);
        o32[word + 12] = PackRow<TE, TM>(math, o.F3, inv, upper);
        o32[word + 16] = PackRow<TE, TM>(math, o.F4, inv, upper);
        o32[word + 20] = PackRow<TE, TM>(math, o.F5, inv, upper);
        o32[word + 24] = PackRow<TE, TM>(math, o.F6, inv, upper);
        o32[word + 28] = PackRow<TE, TM>(math, o.F7, inv, upper);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint PackRow<TE, TM>(TM math, Frag f, float inv, bool upper) where TE : struct, IHalfFormat where TM : struct, IMmaMath<TE>
        => upper ? math.Pack(f.C2 * inv, f.C3 * inv) : math.Pack(f.C0 * inv, f.C1 * inv);
}

/// <summary>
/// One lane's share of a 16 x 8 float32 tile in the mma.m16n8k16 layout: with g = lane / 4 and
/// t = lane % 4, C0 and C1 are (row g, columns 2t and 2t + 1), C2 and C3 the same columns of row g + 8.
/// Passed by value so ILGPU keeps every field in a register.
/// </summary>
internal struct Frag
{
    public float C0, C1, C2, C3;
}

/// <summary>Eight 16 x 8 fragments: a 16 x 64 tile of one warp (scores of a key tile, or 64 output columns).</summary>
internal struct Frags8
{
    public Frag F0, F1, F2, F3, F4, F5, F6, F7;
}
