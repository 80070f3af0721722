using ILGPU;
using ILGPU.Algorithms;
using static ManagedTensor.Gpu.Kernels.Attention.AttentionTiles;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// The tensor-core attention forward (FlashAttention-2's algorithm) for 16-bit q, k, v and head dim
/// 64 or 128 (a compile-time parameter), built to at most 8 instructions per mma in its key loop
/// (the kernel report measures it from SASS).
///
/// A block of 8 warps takes 128 query rows, 16 per warp; key tiles of 64 rows of K and V stream
/// through shared memory, double-buffered with cp.async (tile j + 1 is in flight while tile j is
/// multiplied; one barrier per tile). Each warp computes, in registers:
///   S (16 x 64) = Q K^T: Q's fragments were loaded once (ldmatrix) and stay in registers; K's come by
///     ldmatrix (K rows are k-contiguous: plain ldmatrix gives mma's "col" B operand);
///   the online softmax on the fragments, in base 2: p = exp2(s scale log2(e) - m scale log2(e)), one FFMA
///     and one MUFU.EX2 per score; a lane holds parts of rows g and g + 8, so the row max and sum finish
///     across the 4 lanes of a quad with two xor-shuffles;
///   O (16 x D) += P V: P's accumulators repacked in place as the A operand (the C layout of two
///     adjacent 16 x 8 tiles is the A layout of one 16 x 16 tile), V's fragments by ldmatrix.trans.
/// Per 64-key tile and warp: D / 2 + D / 2 mma (64 at D = 64, 128 at D = 128), D / 4 + D / 4 ldmatrix,
/// 64 FFMA + 32 MUFU of softmax, D / 32 cp.async per operand per thread.
///
/// Causal attention skips the key tiles no row of the block sees, and only the diagonal tiles (and a
/// last, partial tile) run the masking code: the key loop is two loops, unmasked then masked. Blocks
/// start with the last query tiles (the most keys), so the long blocks are not left for the tail.
///
/// Shared memory (dynamic): two buffers of K and V tiles (64 x D each, swizzled 16-byte chunks, see
/// <see cref="AttentionTiles"/>), 32 KB at D = 64, 64 KB at D = 128 (past the 48 KB default: the kernel
/// is opted in, <see cref="CudaFunctionAttributes"/>); Q is staged through the second buffer before the
/// loop. Registers at D = 128: 32 for Q, 64 for O, 32 for S.
///
/// The plain path (<see cref="PlainPath"/>, the CPU accelerator in CI) runs the same loops, masking,
/// softmax and output with float dot products over the same tiles (Q kept in its own tile, P handed
/// over through a per-warp scratch tile) and any number of warps.
/// Launch: <see cref="Threads"/> threads on CUDA; grid (ceil(T / (16 warps)), B H).
/// </summary>
internal static class AttentionMmaKernels
{
    public const int Threads = 256;
    public const int BlockK = 64;
    internal const float Log2E = 1.44269504f;
    internal const float Ln2 = 0.693147181f;

    /// <summary>Whether this kernel covers a head dim.</summary>
    public static bool Supports(int d) => d == 64 || d == 128;

    /// <summary>Dynamic shared memory of a launch: the K/V buffers (+ 256 bytes to align them), plus Q and P tiles on the plain path.</summary>
    public static int SharedBytes(int d, bool tensorCores, int warps) =>
        tensorCores ? 256 + 4 * BlockK * d * 2 : 4 * BlockK * d * 2 + 16 * warps * d * 2 + 16 * warps * BlockK * 2;

    /// <summary>The running softmax state of a warp's 16 rows: O (two halves of 64 columns), and per row max and sum.</summary>
    internal struct RowState
    {
        public Frags8 OLo, OHi;
        public float MA, MB, LA, LB;
    }

    public static void Forward<TE, TP, THd, TDr>(ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v, ArrayView<ushort> o, ArrayView<float> lse,
        ulong qAddress, ulong kAddress, ulong vAddress, AttentionParams p)
        where TE : struct, IHalfFormat where TP : struct, IAttentionPath where THd : struct, IHeadDim where TDr : struct, IDropout
    {
        bool tc = default(TP).TensorCores;
        int d = default(THd).D, rowBytes = 2 * d, tileBytes = BlockK * rowBytes, bufferBytes = 2 * tileBytes;
        bool d128 = d == 128;
        int tid = Group.IdxX, threads = tc ? Threads : Group.DimX;
        int tile = Grid.DimX - 1 - Grid.IdxX, bh = Grid.IdxY;     // the last query tiles (most keys) first
        int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        int blockQ = threads >> 1;                                 // 16 rows per warp of 32
        var smem = SharedMemory.GetDynamic<ushort>();
        // TC: the shared window address of the block, aligned to 256 bytes so that the swizzle's XORs (bits 4-7) act on offsets.
        uint sbase = tc ? (Ptx.DynamicSharedBase() + 255u) & ~255u : 0u;

        int r0 = tile * blockQ;
        long kvRow0 = (long)p.KvHead(bh) * p.S;                   // the division runs once per block
        int rowA = r0 + warp * 16 + g, rowB = rowA + 8;
        int endA = p.VisibleEnd(rowA), endB = p.VisibleEnd(rowB);
        int kLimit = p.VisibleEnd(XMath.Min(p.T, r0 + blockQ) - 1); // keys any row of the block sees
        int tiles = (kLimit + BlockK - 1) >> 6;
        int fullTiles = XMath.Min(p.VisibleEnd(r0) >> 6, tiles);   // tiles every row sees whole: no mask
        float scale = p.Scale * Log2E;

        // Per-thread chunk of the 64-row tiles: row (tid / (D / 8)) + 2048 / D * i, chunk tid % (D / 8); chunk i is
        // 4096 bytes after chunk 0 both in shared memory (same swizzle bits) and in global memory (dense rows).
        int chunkRow = d128 ? tid >> 4 : tid >> 3, chunk = d128 ? tid & 15 : tid & 7;
        int chunkDst = Offset(chunkRow, chunk, rowBytes);
        long chunkSrc = (long)chunkRow * d + chunk * 8;            // elements from a tile's first row

        var st = new RowState { MA = float.NegativeInfinity, MB = float.NegativeInfinity };
        AFrags qf = default;
        int qTile = 2 * bufferBytes, pTile = qTile + blockQ * rowBytes + warp * 16 * BlockK * 2;
        if (tc)
        {
            // Q (rows r0.., D / 16 chunks per thread) through buffer 1, then K/V tile 0 into buffer 0.
            ulong qSrc = qAddress + (ulong)((((long)bh * p.T + r0) * d + chunkSrc) * 2);
            StageQ(sbase + (uint)(bufferBytes + chunkDst), qSrc, p.T - r0 - chunkRow, d128);
            Commit();
            StageKv(sbase + (uint)chunkDst, kAddress, vAddress, kvRow0, 0, chunkSrc, p.S - chunkRow, d, d128);
            Commit();
            WaitAllButNewest();
            Group.Barrier();
            qf = LoadA(sbase + (uint)bufferBytes + RowsAddress(warp * 16, lane, rowBytes, bLayout: false), d128);
            Group.Barrier(); // everyone has its Q fragments: buffer 1 is free for K/V tile 1
        }
        else
        {
            StagePlain(q, ((long)bh * p.T + r0) * d, p.T - r0, blockQ, d, smem, qTile, tid, threads);
        }

        uint kRows = RowsAddress(0, lane, rowBytes, bLayout: true), vTrans = TransAddress(lane, rowBytes);
        int j = 0;
        for (; j < fullTiles; j++)
            st = KeyTile<TE, TP, TDr>(st, qf, q, k, v, smem, sbase, kAddress, vAddress, kvRow0, p, bh, j, tiles, chunkDst, chunkSrc, chunkRow,
                kRows, vTrans, qTile, pTile, warp, g, t, rowA, rowB, endA, endB, scale, d, tid, threads, masked: false);
        for (; j < tiles; j++)
            st = KeyTile<TE, TP, TDr>(st, qf, q, k, v, smem, sbase, kAddress, vAddress, kvRow0, p, bh, j, tiles, chunkDst, chunkSrc, chunkRow,
                kRows, vTrans, qTile, pTile, warp, g, t, rowA, rowB, endA, endB, scale, d, tid, threads, masked: true);
        if (tc) WaitAll();

        // Finish the row sums across the quad, normalize, store (packed pairs: word t + 4 n of the row).
        float lA = QuadSum(st.LA), lB = QuadSum(st.LB);
        float invA = lA == 0f ? 0f : 1f / lA, invB = lB == 0f ? 0f : 1f / lB;
        var o32 = o.Cast<uint>();
        int words = d >> 1;
        if (rowA < p.T)
        {
            long word = ((long)bh * p.T + rowA) * words + t;
            StoreRow<TE>(st.OLo, o32, word, invA, rowB: false);
            if (d128) StoreRow<TE>(st.OHi, o32, word + 32, invA, rowB: false);
            if (t == 0) lse[(long)bh * p.T + rowA] = lA == 0f ? float.PositiveInfinity : st.MA * p.Scale + XMath.Log(lA);
        }
        if (rowB < p.T)
        {
            long word = ((long)bh * p.T + rowB) * words + t;
            StoreRow<TE>(st.OLo, o32, word, invB, rowB: true);
            if (d128) StoreRow<TE>(st.OHi, o32, word + 32, invB, rowB: true);
            if (t == 0) lse[(long)bh * p.T + rowB] = lB == 0f ? float.PositiveInfinity : st.MB * p.Scale + XMath.Log(lB);
        }
    }

    /// <summary>
    /// One 64-key tile j: (tensor cores) wait for it, start tile j + 1's copy into the other buffer, then S, the online
    /// softmax (masked only on diagonal and partial tiles), and O += P V.
    /// </summary>
    private static RowState KeyTile<TE, TP, TDr>(RowState st, AFrags qf, ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v,
        ArrayView<ushort> smem, uint sbase, ulong kAddress, ulong vAddress, long kvRow0, AttentionParams p, int bh, int j, int tiles,
        int chunkDst, long chunkSrc, int chunkRow, uint kRows, uint vTrans, int qTile, int pTile, int warp, int g, int t,
        int rowA, int rowB, int endA, int endB, float scale, int d, int tid, int threads, bool masked)
        where TE : struct, IHalfFormat where TP : struct, IAttentionPath where TDr : struct, IDropout
    {
        bool tc = default(TP).TensorCores, d128 = d == 128;
        int rowBytes = 2 * d, tileBytes = BlockK * rowBytes, bufferBytes = 2 * tileBytes;
        int j0 = j << 6;
        int buffer = (j & 1) * bufferBytes;
        Frags8 s;
        if (tc)
        {
            WaitAll();         // tile j has landed (this thread's copies) ...
            Group.Barrier();   // ... and everyone's; everyone is also done with tile j - 1's buffer
            if (j + 1 < tiles)
                StageKv(sbase + (uint)((bufferBytes ^ buffer) + chunkDst), kAddress, vAddress, kvRow0, j0 + BlockK, chunkSrc, p.S - j0 - BlockK - chunkRow, d, d128);
            Commit();
            s = Product<TE>(qf, sbase + (uint)buffer + kRows, rowBytes, d128);
        }
        else
        {
            Group.Barrier();
            StagePlain(k, (kvRow0 + j0) * d, p.S - j0, BlockK, d, smem, buffer, tid, threads);
            StagePlain(v, (kvRow0 + j0) * d, p.S - j0, BlockK, d, smem, buffer + tileBytes, tid, threads);
            Group.Barrier();
            s = ProductPlain<TE>(smem, qTile, warp * 16, buffer, rowBytes, d, g, t);
        }

        // The online softmax (base 2); only diagonal and partial tiles mask.
        if (masked) s = Mask(s, j0 + 2 * t, endA, endB);
        float newA = Max(st.MA, QuadMax(RowMaxA(s))), newB = Max(st.MB, QuadMax(RowMaxB(s)));
        float baseA = newA == float.NegativeInfinity ? 0f : newA * scale, baseB = newB == float.NegativeInfinity ? 0f : newB * scale;
        float corrA = FastExp2(st.MA * scale - baseA), corrB = FastExp2(st.MB * scale - baseB);
        st.MA = newA;
        st.MB = newB;
        s = Exp2(s, scale, baseA, baseB);
        st.LA = st.LA * corrA + RowSumA(s);
        st.LB = st.LB * corrB + RowSumB(s);
        st.OLo = Scale(st.OLo, corrA, corrB);
        if (d128) st.OHi = Scale(st.OHi, corrA, corrB);
        if (default(TDr).Enabled) s = Drop(s, p, bh, rowA, rowB, j0 + 2 * t);

        // O += P V.
        if (tc)
        {
            uint vStep = sbase + (uint)(buffer + tileBytes) + vTrans;
            uint step16 = (uint)(16 * rowBytes);
            var a0 = AsA<TE>(s, 0);
            var a1 = AsA<TE>(s, 1);
            var a2 = AsA<TE>(s, 2);
            var a3 = AsA<TE>(s, 3);
            st.OLo = TransStep<TE>(st.OLo, a0, vStep, 0);
            st.OLo = TransStep<TE>(st.OLo, a1, vStep + step16, 0);
            st.OLo = TransStep<TE>(st.OLo, a2, vStep + 2 * step16, 0);
            st.OLo = TransStep<TE>(st.OLo, a3, vStep + 3 * step16, 0);
            if (d128)
            {
                st.OHi = TransStep<TE>(st.OHi, a0, vStep, 4);
                st.OHi = TransStep<TE>(st.OHi, a1, vStep + step16, 4);
                st.OHi = TransStep<TE>(st.OHi, a2, vStep + 2 * step16, 4);
                st.OHi = TransStep<TE>(st.OHi, a3, vStep + 3 * step16, 4);
            }
        }
        else
        {
            StoreWeights<TE>(s, smem, pTile, g, t); // rounded to 16 bits, as the mma path rounds P
            Group.Barrier();
            st.OLo = AccumulatePlain<TE>(st.OLo, smem, pTile, buffer + tileBytes, rowBytes, 0, g, t);
            if (d128) st.OHi = AccumulatePlain<TE>(st.OHi, smem, pTile, buffer + tileBytes, rowBytes, 64, g, t);
        }
        return st;
    }

    /// <summary>This thread's chunks of the 128-row Q tile: D / 16 of them, 4096 bytes apart; rows at or past T zero-filled.</summary>
    private static void StageQ(uint dst, ulong src, int rowsLeft, bool d128)
    {
        // Chunk i covers row chunkRow + i * (2048 / D): 32 rows apart at D = 64, 16 at D = 128.
        int step = d128 ? 16 : 32;
        CopyAsync(dst, src, rowsLeft > 0 ? 16u : 0u);
        CopyAsync(dst + 4096, src + 4096, rowsLeft > step ? 16u : 0u);
        CopyAsync(dst + 8192, src + 8192, rowsLeft > 2 * step ? 16u : 0u);
        CopyAsync(dst + 12288, src + 12288, rowsLeft > 3 * step ? 16u : 0u);
        if (d128)
        {
            CopyAsync(dst + 16384, src + 16384, rowsLeft > 4 * step ? 16u : 0u);
            CopyAsync(dst + 20480, src + 20480, rowsLeft > 5 * step ? 16u : 0u);
            CopyAsync(dst + 24576, src + 24576, rowsLeft > 6 * step ? 16u : 0u);
            CopyAsync(dst + 28672, src + 28672, rowsLeft > 7 * step ? 16u : 0u);
        }
    }

    /// <summary>
    /// This thread's chunks of a 64-key K tile and V tile (starting at key <paramref name="key0"/>) into a buffer (K, then V
    /// tileBytes later): D / 32 chunks each, 4096 bytes apart; keys at or past S zero-filled (rowsLeft counts from this
    /// thread's first row).
    /// </summary>
    private static void StageKv(uint dst, ulong kAddress, ulong vAddress, long kvRow0, int key0, long chunkSrc, int rowsLeft, int d, bool d128)
    {
        long element = (kvRow0 + key0) * d + chunkSrc;
        ulong ks = kAddress + (ulong)(element * 2), vs = vAddress + (ulong)(element * 2);
        uint vDst = dst + (uint)(BlockK * 2 * d);
        int step = d128 ? 16 : 32;
        uint s0 = rowsLeft > 0 ? 16u : 0u, s1 = rowsLeft > step ? 16u : 0u;
        CopyAsync(dst, ks, s0);
        CopyAsync(dst + 4096, ks + 4096, s1);
        CopyAsync(vDst, vs, s0);
        CopyAsync(vDst + 4096, vs + 4096, s1);
        if (d128)
        {
            uint s2 = rowsLeft > 2 * step ? 16u : 0u, s3 = rowsLeft > 3 * step ? 16u : 0u;
            CopyAsync(dst + 8192, ks + 8192, s2);
            CopyAsync(dst + 12288, ks + 12288, s3);
            CopyAsync(vDst + 8192, vs + 8192, s2);
            CopyAsync(vDst + 12288, vs + 12288, s3);
        }
    }
}
