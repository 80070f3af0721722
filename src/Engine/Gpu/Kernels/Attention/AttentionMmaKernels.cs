using ILGPU;
using ILGPU.Algorithms;
using ManagedTensor.Gpu.Kernels;

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
internal static class AttentionMmaKernels
{
    public const int GroupSize = 128;
    public const int MaxBlockQ = 64;   // 4 warps x 16 rows
    public const int BlockK = 64;
    private const int TileWords = 4096;   // 64 x 128 16-bit values
    internal const float Log2E = 1.44269504f;
    internal const float Ln2 = 0.693147181f;

    /// <summary>Whether this kernel covers a head dim.</summary>
    public static bool Supports(int d) => d == 64 || d == 128;

    public static void Forward<TE, TM>(ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v, ArrayView<ushort> o, ArrayView<float> lse, AttentionParams p)
        where TE : struct, IHalfFormat where TM : struct, IMmaMath<TE>
    {
        int tid = Group.IdxX, threads = Group.DimX, tile = Grid.IdxX, bh = Grid.IdxY;
        int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        int blockQ = threads / 2; // 16 rows per warp of 32
        TE e = default;
        TM math = default;
        var qSm = SharedMemory.Allocate<uint>(TileWords);
        var kSm = SharedMemory.Allocate<uint>(TileWords); // K (BlockK, D); P in the plain path
        var vSm = SharedMemory.Allocate<uint>(TileWords); // V^T (D, BlockK)
        var k32 = k.Cast<uint>();
        var v32 = v.Cast<uint>();
        int d = p.D, rowPairs = d / 2;
        int r0 = tile * blockQ;
        long kvBase = (long)p.KvHead(bh) * p.S * rowPairs;
        MmaTiles.StageRows(q.Cast<uint>(), ((long)bh * p.T + r0) * rowPairs, p.T - r0, rowPairs, qSm, tid, threads, blockQ);
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
            MmaTiles.StageRows(k32, kvBase + (long)j0 * rowPairs, n, rowPairs, kSm, tid, threads);
            MmaTiles.StageTransposed(v32, kvBase + (long)j0 * rowPairs, n, rowPairs, vSm, tid, threads);
            Group.Barrier();

            // S = Q K^T for the warp's 16 rows, then the online softmax on the fragments (base 2).
            var s = math.Product(qSm, kSm, warpRow, g, t, d);
            s = MmaTiles.ScaleMask(s, scaleLog2, j0 + BlockK > firstEnd, j0 + 2 * t, endA, endB);
            float mxA = MmaTiles.QuadMax(MmaTiles.RowMaxA(s)), mxB = MmaTiles.QuadMax(MmaTiles.RowMaxB(s));
            float newA = XMath.Max(mA, mxA), newB = XMath.Max(mB, mxB);
            float baseA = newA == float.NegativeInfinity ? 0f : newA, baseB = newB == float.NegativeInfinity ? 0f : newB;
            float corrA = XMath.Exp2(mA - baseA), corrB = XMath.Exp2(mB - baseB);
            mA = newA;
            mB = newB;
            s = MmaTiles.Exp2(s, baseA, baseB);
            lA = lA * corrA + MmaTiles.RowSumA(s);
            lB = lB * corrB + MmaTiles.RowSumB(s);
            oLo = MmaTiles.Scale(oLo, corrA, corrB);
            oHi = MmaTiles.Scale(oHi, corrA, corrB);
            if (p.Dropout != 0) s = MmaTiles.Drop(s, p, bh, rowA, rowB, j0 + 2 * t);

            // O += P V (the plain path hands P over in K's buffer: every warp is done with K).
            if (math.ReadsWeightsFromShared)
            {
                Group.Barrier();
                MmaTiles.StoreP(e, s, kSm, warpRow, t);
                Group.Barrier();
            }
            oLo = math.Accumulate(oLo, s, vSm, kSm, warpRow, 0, g, t);
            if (d == 128) oHi = math.Accumulate(oHi, s, vSm, kSm, warpRow, 8, g, t);
        }

        // Finish the row sums across the quad, normalize, store.
        lA = MmaTiles.QuadSum(lA);
        lB = MmaTiles.QuadSum(lB);
        float invA = lA == 0f ? 0f : 1f / lA, invB = lB == 0f ? 0f : 1f / lB;
        var o32 = o.Cast<uint>();
        if (rowA < p.T)
        {
            long rowWord = ((long)bh * p.T + rowA) * rowPairs + t;
            MmaTiles.StoreRow<TE, TM>(math, oLo, o32, rowWord, invA, upper: false);
            if (d == 128) MmaTiles.StoreRow<TE, TM>(math, oHi, o32, rowWord + 32, invA, upper: false);
            if (t == 0) lse[(long)bh * p.T + rowA] = lA == 0f ? float.PositiveInfinity : mA * Ln2 + XMath.Log(lA);
        }
        if (rowB < p.T)
        {
            long rowWord = ((long)bh * p.T + rowB) * rowPairs + t;
            MmaTiles.StoreRow<TE, TM>(math, oLo, o32, rowWord, invB, upper: true);
            if (d == 128) MmaTiles.StoreRow<TE, TM>(math, oHi, o32, rowWord + 32, invB, upper: true);
            if (t == 0) lse[(long)bh * p.T + rowB] = lB == 0f ? float.PositiveInfinity : mB * Ln2 + XMath.Log(lB);
        }
    }
}

