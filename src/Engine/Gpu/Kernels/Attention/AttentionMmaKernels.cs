using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime.Cuda;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// The tensor-core forward (FlashAttention-2's layout) for 16-bit q, k, v and head dim 64 or 128.
/// A group of 1 to 4 warps takes 16 query rows per warp; key tiles of 64 are staged in shared memory
/// (K as is, V transposed) and each warp computes, in registers:
///   S (16 x 64) = Q K^T with mma.m16n8k16 (8 fragments of 16 x 8),
///   the online-softmax update on the fragments (a lane holds parts of rows g and g + 8; row max and
///   sum are finished across the 4 lanes of a quad with two xor-shuffles),
///   O (16 x D) += P V, where P's accumulator fragments are repacked as the A operand in place (the
///   C layout of two adjacent 16 x 8 tiles is the A layout of one 16 x 16 tile).
/// Softmax runs in base 2: s log2(e) scale, exp2.
///
/// Shared tiles are swizzled in 16-byte chunks (chunk c of row r is stored at c ^ (r % 8)), so the
/// 32-bit fragment loads of a warp hit 32 different banks. Q, K and V^T take 3 x 16 KB at D = 128:
/// exactly the 48 KB of static shared memory a block may use without opting in.
///
/// On a non-CUDA accelerator (the CPU one in tests) each mma is replaced by plain float32 dot products
/// over the same shared tiles and P goes through shared memory, so everything except the mma
/// instruction itself (fragment bookkeeping, masking, softmax, staging, the output) runs in CI.
/// Launch: groups of 32 x warps threads (<see cref="GroupSize"/> = 4 warps on a GPU; ILGPU's CPU
/// accelerator may allow fewer), grid (ceil(T / (16 warps)), B H).
/// </summary>
public static class AttentionMmaKernels
{
    public const int GroupSize = 128;
    public const int MaxBlockQ = 64;   // 4 warps x 16 rows
    public const int BlockK = 64;
    private const int TileWords = 4096;   // 64 x 128 16-bit values
    private const float Log2E = 1.44269504f;
    private const float Ln2 = 0.693147181f;

    /// <summary>Whether this kernel covers a head dim.</summary>
    public static bool Supports(int d) => d == 64 || d == 128;

    /// <summary>Word (pair) cp of row r in a swizzled tile of rowPairs words per row (rowPairs >= 32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Swz(int r, int cp, int rowPairs) => r * rowPairs + ((((cp >> 2) ^ (r & 7))) << 2) + (cp & 3);

    public static void Forward<TE>(ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v, ArrayView<ushort> o, ArrayView<float> lse, AttentionParams p)
        where TE : struct, IMmaElement
    {
        int tid = Group.IdxX, threads = Group.DimX, tile = Grid.IdxX, bh = Grid.IdxY;
        int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        int blockQ = threads / 2; // 16 rows per warp of 32
        TE e = default;
        var qSm = SharedMemory.Allocate<uint>(TileWords);
        var kSm = SharedMemory.Allocate<uint>(TileWords); // K (BlockK, D); P in the plain path
        var vSm = SharedMemory.Allocate<uint>(TileWords); // V^T (D, BlockK)
        var q32 = q.Cast<uint>();
        var k32 = k.Cast<uint>();
        var v32 = v.Cast<uint>();
        var o32 = o.Cast<uint>();
        int d = p.D, rowPairs = d / 2;
        int r0 = tile * blockQ;
        long qBase = ((long)bh * p.T + r0) * rowPairs;
        long kvBase = (long)p.KvHead(bh) * p.S * rowPairs;
        for (int x = tid; x < blockQ * rowPairs; x += threads)
        {
            int r = x / rowPairs, cp = x - r * rowPairs;
            qSm[Swz(r, cp, rowPairs)] = r0 + r < p.T ? q32[qBase + x] : 0u;
        }
        int warpRow = warp * 16 + g;                       // tile row of C0/C1; C2/C3 are 8 below
        int rowA = r0 + warpRow, rowB = rowA + 8;
        int endA = p.VisibleEnd(rowA), endB = p.VisibleEnd(rowB);
        int kLimit = p.VisibleEnd(XMath.Min(p.T, r0 + blockQ) - 1);
        int firstEnd = p.VisibleEnd(r0);                   // the group's first row sees the fewest keys
        float scaleLog2 = p.Scale * Log2E;
        float mA = float.NegativeInfinity, mB = float.NegativeInfinity, lA = 0f, lB = 0f;
        Frags8 oLo = default, oHi = default;               // O columns 0..63 and 64..127
        for (int j0 = 0; j0 < kLimit; j0 += BlockK)
        {
            int n = XMath.Min(BlockK, kLimit - j0);
            Group.Barrier();
            for (int x = tid; x < BlockK * rowPairs; x += threads)
            {
                int r = x / rowPairs, cp = x - r * rowPairs;
                kSm[Swz(r, cp, rowPairs)] = r < n ? k32[kvBase + (long)(j0 + r) * rowPairs + cp] : 0u;
            }
            // V^T: a thread takes keys (2 kp, 2 kp + 1) x dims (2 dp, 2 dp + 1) and writes two transposed pairs.
            for (int x = tid; x < BlockK / 2 * rowPairs; x += threads)
            {
                int kp = x / rowPairs, dp = x - kp * rowPairs;
                int key = 2 * kp;
                uint w0 = key < n ? v32[kvBase + (long)(j0 + key) * rowPairs + dp] : 0u;     // (d, d + 1) of key
                uint w1 = key + 1 < n ? v32[kvBase + (long)(j0 + key + 1) * rowPairs + dp] : 0u;
                vSm[Swz(2 * dp, kp, BlockK / 2)] = (w0 & 0xFFFFu) | (w1 << 16);
                vSm[Swz(2 * dp + 1, kp, BlockK / 2)] = (w0 >> 16) | (w1 & 0xFFFF0000u);
            }
            Group.Barrier();

            // S = Q K^T for the warp's 16 rows.
            Frags8 s = default;
            if (CudaAsm.IsSupported)
            {
                for (int ks = 0; ks < d / 16; ks++)
                {
                    int pa = ks * 8 + t; // the word of k = 16 ks + 2t
                    uint a0 = qSm[Swz(warpRow, pa, rowPairs)], a1 = qSm[Swz(warpRow + 8, pa, rowPairs)];
                    uint a2 = qSm[Swz(warpRow, pa + 4, rowPairs)], a3 = qSm[Swz(warpRow + 8, pa + 4, rowPairs)];
                    s = QkStep(e, s, a0, a1, a2, a3, kSm, pa, g, rowPairs);
                }
            }
            else s = QkPlain(e, qSm, kSm, warpRow, t, d);

            // Online softmax on the fragments (base 2).
            s = ScaleMask(s, scaleLog2, j0 + BlockK > firstEnd, j0 + 2 * t, endA, endB);
            float mxA = RowMaxA(s), mxB = RowMaxB(s);
            mxA = XMath.Max(mxA, Warp.ShuffleXor(mxA, 1));
            mxA = XMath.Max(mxA, Warp.ShuffleXor(mxA, 2));
            mxB = XMath.Max(mxB, Warp.ShuffleXor(mxB, 1));
            mxB = XMath.Max(mxB, Warp.ShuffleXor(mxB, 2));
            float newA = XMath.Max(mA, mxA), newB = XMath.Max(mB, mxB);
            float baseA = newA == float.NegativeInfinity ? 0f : newA, baseB = newB == float.NegativeInfinity ? 0f : newB;
            float corrA = XMath.Exp2(mA - baseA), corrB = XMath.Exp2(mB - baseB);
            mA = newA;
            mB = newB;
            s = Exp2(s, baseA, baseB);
            lA = lA * corrA + RowSumA(s);
            lB = lB * corrB + RowSumB(s);
            oLo = Scale(oLo, corrA, corrB);
            oHi = Scale(oHi, corrA, corrB);
            if (p.Dropout != 0) s = Drop(s, p, bh, rowA, rowB, j0 + 2 * t);

            // O += P V.
            if (CudaAsm.IsSupported)
            {
                oLo = PvStep(e, oLo, s.F0, s.F1, vSm, 0, 0, g, t);
                oLo = PvStep(e, oLo, s.F2, s.F3, vSm, 1, 0, g, t);
                oLo = PvStep(e, oLo, s.F4, s.F5, vSm, 2, 0, g, t);
                oLo = PvStep(e, oLo, s.F6, s.F7, vSm, 3, 0, g, t);
                if (d == 128)
                {
                    oHi = PvStep(e, oHi, s.F0, s.F1, vSm, 0, 8, g, t);
                    oHi = PvStep(e, oHi, s.F2, s.F3, vSm, 1, 8, g, t);
                    oHi = PvStep(e, oHi, s.F4, s.F5, vSm, 2, 8, g, t);
                    oHi = PvStep(e, oHi, s.F6, s.F7, vSm, 3, 8, g, t);
                }
            }
            else
            {
                Group.Barrier(); // every warp has read K: its buffer now carries P, (64 rows, 32 words)
                StoreP(e, s, kSm, warpRow, t);
                Group.Barrier();
                oLo = PvPlain(e, oLo, kSm, vSm, warpRow, 0, t);
                if (d == 128) oHi = PvPlain(e, oHi, kSm, vSm, warpRow, 8, t);
            }
        }

        // Finish the row sums across the quad, normalize, store.
        lA += Warp.ShuffleXor(lA, 1);
        lA += Warp.ShuffleXor(lA, 2);
        lB += Warp.ShuffleXor(lB, 1);
        lB += Warp.ShuffleXor(lB, 2);
        float invA = lA == 0f ? 0f : 1f / lA, invB = lB == 0f ? 0f : 1f / lB;
        if (rowA < p.T)
        {
            long rowWord = ((long)bh * p.T + rowA) * rowPairs + t;
            StoreRow(e, oLo, o32, rowWord, invA, upper: false);
            if (d == 128) StoreRow(e, oHi, o32, rowWord + 32, invA, upper: false);
            if (t == 0) lse[(long)bh * p.T + rowA] = lA == 0f ? float.PositiveInfinity : mA * Ln2 + XMath.Log(lA);
        }
        if (rowB < p.T)
        {
            long rowWord = ((long)bh * p.T + rowB) * rowPairs + t;
            StoreRow(e, oLo, o32, rowWord, invB, upper: true);
            if (d == 128) StoreRow(e, oHi, o32, rowWord + 32, invB, upper: true);
            if (t == 0) lse[(long)bh * p.T + rowB] = lB == 0f ? float.PositiveInfinity : mB * Ln2 + XMath.Log(lB);
        }
    }

    // ---- S = Q K^T ----

    /// <summary>One k-step (16 of D) of S for all 8 key fragments: B of fragment nt is keys nt*8 + g.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Frags8 QkStep<TE>(TE e, Frags8 s, uint a0, uint a1, uint a2, uint a3, ArrayView<uint> kSm, int pa, int g, int rowPairs)
        where TE : struct, IMmaElement
    {
        s.F0 = e.Mma(s.F0, a0, a1, a2, a3, kSm[Swz(g, pa, rowPairs)], kSm[Swz(g, pa + 4, rowPairs)]);
        s.F1 = e.Mma(s.F1, a0, a1, a2, a3, kSm[Swz(8 + g, pa, rowPairs)], kSm[Swz(8 + g, pa + 4, rowPairs)]);
        s.F2 = e.Mma(s.F2, a0, a1, a2, a3, kSm[Swz(16 + g, pa, rowPairs)], kSm[Swz(16 + g, pa + 4, rowPairs)]);
        s.F3 = e.Mma(s.F3, a0, a1, a2, a3, kSm[Swz(24 + g, pa, rowPairs)], kSm[Swz(24 + g, pa + 4, rowPairs)]);
        s.F4 = e.Mma(s.F4, a0, a1, a2, a3, kSm[Swz(32 + g, pa, rowPairs)], kSm[Swz(32 + g, pa + 4, rowPairs)]);
        s.F5 = e.Mma(s.F5, a0, a1, a2, a3, kSm[Swz(40 + g, pa, rowPairs)], kSm[Swz(40 + g, pa + 4, rowPairs)]);
        s.F6 = e.Mma(s.F6, a0, a1, a2, a3, kSm[Swz(48 + g, pa, rowPairs)], kSm[Swz(48 + g, pa + 4, rowPairs)]);
        s.F7 = e.Mma(s.F7, a0, a1, a2, a3, kSm[Swz(56 + g, pa, rowPairs)], kSm[Swz(56 + g, pa + 4, rowPairs)]);
        return s;
    }

    /// <summary>The plain path: each lane computes its own fragment entries as dot products over the tiles.</summary>
    private static Frags8 QkPlain<TE>(TE e, ArrayView<uint> qSm, ArrayView<uint> kSm, int warpRow, int t, int d)
        where TE : struct, IMmaElement
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

    private static Frag QkFragPlain<TE>(TE e, ArrayView<uint> qSm, ArrayView<uint> kSm, int row, int key, int d)
        where TE : struct, IMmaElement
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
    private static float Dot2<TE>(TE e, uint x, uint y) where TE : struct, IMmaElement
        => e.ToFloat((ushort)x) * e.ToFloat((ushort)y) + e.ToFloat((ushort)(x >> 16)) * e.ToFloat((ushort)(y >> 16));

    // ---- softmax on fragments ----

    /// <summary>s * scale; keys at or past a row's visible end become -inf (only on tiles that need it).</summary>
    private static Frags8 ScaleMask(Frags8 s, float scale, bool mask, int key0, int endA, int endB)
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
    private static Frag ScaleMask(Frag f, float scale, bool mask, int key, int endA, int endB)
    {
        f.C0 = mask && key >= endA ? float.NegativeInfinity : f.C0 * scale;
        f.C1 = mask && key + 1 >= endA ? float.NegativeInfinity : f.C1 * scale;
        f.C2 = mask && key >= endB ? float.NegativeInfinity : f.C2 * scale;
        f.C3 = mask && key + 1 >= endB ? float.NegativeInfinity : f.C3 * scale;
        return f;
    }

    private static float RowMaxA(Frags8 s)
        => XMath.Max(XMath.Max(XMath.Max(Max(s.F0.C0, s.F0.C1), Max(s.F1.C0, s.F1.C1)), XMath.Max(Max(s.F2.C0, s.F2.C1), Max(s.F3.C0, s.F3.C1))),
            XMath.Max(XMath.Max(Max(s.F4.C0, s.F4.C1), Max(s.F5.C0, s.F5.C1)), XMath.Max(Max(s.F6.C0, s.F6.C1), Max(s.F7.C0, s.F7.C1))));

    private static float RowMaxB(Frags8 s)
        => XMath.Max(XMath.Max(XMath.Max(Max(s.F0.C2, s.F0.C3), Max(s.F1.C2, s.F1.C3)), XMath.Max(Max(s.F2.C2, s.F2.C3), Max(s.F3.C2, s.F3.C3))),
            XMath.Max(XMath.Max(Max(s.F4.C2, s.F4.C3), Max(s.F5.C2, s.F5.C3)), XMath.Max(Max(s.F6.C2, s.F6.C3), Max(s.F7.C2, s.F7.C3))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Max(float a, float b) => XMath.Max(a, b);

    private static float RowSumA(Frags8 s)
        => s.F0.C0 + s.F0.C1 + s.F1.C0 + s.F1.C1 + s.F2.C0 + s.F2.C1 + s.F3.C0 + s.F3.C1
         + s.F4.C0 + s.F4.C1 + s.F5.C0 + s.F5.C1 + s.F6.C0 + s.F6.C1 + s.F7.C0 + s.F7.C1;

    private static float RowSumB(Frags8 s)
        => s.F0.C2 + s.F0.C3 + s.F1.C2 + s.F1.C3 + s.F2.C2 + s.F2.C3 + s.F3.C2 + s.F3.C3
         + s.F4.C2 + s.F4.C3 + s.F5.C2 + s.F5.C3 + s.F6.C2 + s.F6.C3 + s.F7.C2 + s.F7.C3;

    /// <summary>exp2(s - base) per row (row A: C0, C1; row B: C2, C3); -inf gives 0.</summary>
    private static Frags8 Exp2(Frags8 s, float baseA, float baseB)
    {
        s.F0 = Exp2(s.F0, baseA, baseB); s.F1 = Exp2(s.F1, baseA, baseB);
        s.F2 = Exp2(s.F2, baseA, baseB); s.F3 = Exp2(s.F3, baseA, baseB);
        s.F4 = Exp2(s.F4, baseA, baseB); s.F5 = Exp2(s.F5, baseA, baseB);
        s.F6 = Exp2(s.F6, baseA, baseB); s.F7 = Exp2(s.F7, baseA, baseB);
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Frag Exp2(Frag f, float baseA, float baseB)
    {
        f.C0 = XMath.Exp2(f.C0 - baseA);
        f.C1 = XMath.Exp2(f.C1 - baseA);
        f.C2 = XMath.Exp2(f.C2 - baseB);
        f.C3 = XMath.Exp2(f.C3 - baseB);
        return f;
    }

    /// <summary>Rows A and B of an output accumulator times their softmax corrections.</summary>
    private static Frags8 Scale(Frags8 o, float a, float b)
    {
        o.F0 = Scale(o.F0, a, b); o.F1 = Scale(o.F1, a, b); o.F2 = Scale(o.F2, a, b); o.F3 = Scale(o.F3, a, b);
        o.F4 = Scale(o.F4, a, b); o.F5 = Scale(o.F5, a, b); o.F6 = Scale(o.F6, a, b); o.F7 = Scale(o.F7, a, b);
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Frag Scale(Frag f, float a, float b)
    {
        f.C0 *= a; f.C1 *= a; f.C2 *= b; f.C3 *= b;
        return f;
    }

    /// <summary>The dropout multipliers of the tile's weights (rows A and B, keys key0 + 8 nt + {0, 1}).</summary>
    private static Frags8 Drop(Frags8 s, AttentionParams p, int bh, int rowA, int rowB, int key0)
    {
        s.F0 = Drop(s.F0, p, bh, rowA, rowB, key0); s.F1 = Drop(s.F1, p, bh, rowA, rowB, key0 + 8);
        s.F2 = Drop(s.F2, p, bh, rowA, rowB, key0 + 16); s.F3 = Drop(s.F3, p, bh, rowA, rowB, key0 + 24);
        s.F4 = Drop(s.F4, p, bh, rowA, rowB, key0 + 32); s.F5 = Drop(s.F5, p, bh, rowA, rowB, key0 + 40);
        s.F6 = Drop(s.F6, p, bh, rowA, rowB, key0 + 48); s.F7 = Drop(s.F7, p, bh, rowA, rowB, key0 + 56);
        return s;
    }

    private static Frag Drop(Frag f, AttentionParams p, int bh, int rowA, int rowB, int key)
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
    private static Frags8 PvStep<TE>(TE e, Frags8 o, Frag sa, Frag sb, ArrayView<uint> vSm, int kk, int dtBase, int g, int t)
        where TE : struct, IMmaElement
    {
        uint a0 = e.Pack(sa.C0, sa.C1), a1 = e.Pack(sa.C2, sa.C3), a2 = e.Pack(sb.C0, sb.C1), a3 = e.Pack(sb.C2, sb.C3);
        int pa = kk * 8 + t;
        int row = dtBase * 8 + g;
        o.F0 = e.Mma(o.F0, a0, a1, a2, a3, vSm[Swz(row, pa, 32)], vSm[Swz(row, pa + 4, 32)]);
        o.F1 = e.Mma(o.F1, a0, a1, a2, a3, vSm[Swz(row + 8, pa, 32)], vSm[Swz(row + 8, pa + 4, 32)]);
        o.F2 = e.Mma(o.F2, a0, a1, a2, a3, vSm[Swz(row + 16, pa, 32)], vSm[Swz(row + 16, pa + 4, 32)]);
        o.F3 = e.Mma(o.F3, a0, a1, a2, a3, vSm[Swz(row + 24, pa, 32)], vSm[Swz(row + 24, pa + 4, 32)]);
        o.F4 = e.Mma(o.F4, a0, a1, a2, a3, vSm[Swz(row + 32, pa, 32)], vSm[Swz(row + 32, pa + 4, 32)]);
        o.F5 = e.Mma(o.F5, a0, a1, a2, a3, vSm[Swz(row + 40, pa, 32)], vSm[Swz(row + 40, pa + 4, 32)]);
        o.F6 = e.Mma(o.F6, a0, a1, a2, a3, vSm[Swz(row + 48, pa, 32)], vSm[Swz(row + 48, pa + 4, 32)]);
        o.F7 = e.Mma(o.F7, a0, a1, a2, a3, vSm[Swz(row + 56, pa, 32)], vSm[Swz(row + 56, pa + 4, 32)]);
        return o;
    }

    /// <summary>The plain path's P exchange: the lane's weights, rounded to 16 bits as the mma path does, at (row, key pair).</summary>
    private static void StoreP<TE>(TE e, Frags8 s, ArrayView<uint> pSm, int warpRow, int t) where TE : struct, IMmaElement
    {
        StoreP(e, s.F0, pSm, warpRow, t); StoreP(e, s.F1, pSm, warpRow, 4 + t);
        StoreP(e, s.F2, pSm, warpRow, 8 + t); StoreP(e, s.F3, pSm, warpRow, 12 + t);
        StoreP(e, s.F4, pSm, warpRow, 16 + t); StoreP(e, s.F5, pSm, warpRow, 20 + t);
        StoreP(e, s.F6, pSm, warpRow, 24 + t); StoreP(e, s.F7, pSm, warpRow, 28 + t);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreP<TE>(TE e, Frag f, ArrayView<uint> pSm, int row, int pair) where TE : struct, IMmaElement
    {
        pSm[row * 32 + pair] = e.Pack(f.C0, f.C1);
        pSm[(row + 8) * 32 + pair] = e.Pack(f.C2, f.C3);
    }

    private static Frags8 PvPlain<TE>(TE e, Frags8 o, ArrayView<uint> pSm, ArrayView<uint> vSm, int warpRow, int dtBase, int t)
        where TE : struct, IMmaElement
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

    private static Frag PvFragPlain<TE>(TE e, Frag f, ArrayView<uint> pSm, ArrayView<uint> vSm, int row, int col)
        where TE : struct, IMmaElement
    {
        for (int kp = 0; kp < BlockK / 2; kp++)
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
    private static void StoreRow<TE>(TE e, Frags8 o, ArrayView<uint> o32, long word, float inv, bool upper) where TE : struct, IMmaElement
    {
        o32[word] = PackRow(e, o.F0, inv, upper);
        o32[word + 4] = PackRow(e, o.F1, inv, upper);
        o32[word + 8] = PackRow(e, o.F2, inv, upper);
        o32[word + 12] = PackRow(e, o.F3, inv, upper);
        o32[word + 16] = PackRow(e, o.F4, inv, upper);
        o32[word + 20] = PackRow(e, o.F5, inv, upper);
        o32[word + 24] = PackRow(e, o.F6, inv, upper);
        o32[word + 28] = PackRow(e, o.F7, inv, upper);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint PackRow<TE>(TE e, Frag f, float inv, bool upper) where TE : struct, IMmaElement
        => upper ? e.Pack(f.C2 * inv, f.C3 * inv) : e.Pack(f.C0 * inv, f.C1 * inv);
}

/// <summary>Eight 16 x 8 fragments: a 16 x 64 tile of one warp (scores of a key tile, or 64 output columns).</summary>
public struct Frags8
{
    public Frag F0, F1, F2, F3, F4, F5, F6, F7;
}
