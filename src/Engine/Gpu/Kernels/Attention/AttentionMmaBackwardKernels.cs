using ILGPU;
using ILGPU.Algorithms;
using static ManagedTensor.Gpu.Kernels.Attention.AttentionTiles;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// The tensor-core attention backward, FlashAttention-2's algorithm, for 16-bit inputs and head dim 64
/// or 128 (compile-time): one pass computes S and dP once per (key block, query tile) and produces
/// dK, dV and dQ together.
///
/// A block of 4 warps owns 64 keys of one kv head (16 per warp) and walks every query head of its GQA
/// group and every 64-row query tile that sees those keys; Q and dO tiles stream through shared
/// memory, double-buffered with cp.async, and the tile's lse and Di = dO . O rows are staged beside them
/// (loaded into registers one tile ahead). Per tile each warp computes, with S^T's rows being its keys:
///   S^T = K Q^T                                   (K's fragments by ldmatrix, Q's as B)
///   P^T = exp2(S^T scale log2 e - lse log2 e)     (masked only on diagonal and partial tiles)
///   dV += P'^T dO                                  (P' carries the dropout multipliers)
///   dP^T = V dO^T
///   dS^T = P^T (dP'^T - Di)
///   dK += dS^T Q
/// then writes dS^T (16-bit) to shared memory, and after a barrier each warp takes 16 of the tile's query
/// rows: dQ_rows = dS K (dS read back with ldmatrix.trans), added to a float32 dQ accumulator in global
/// memory with red.global.add (blocks of different keys add into the same rows). A last elementwise
/// kernel scales it and rounds it to dq. Atomic float adds make dq's last bits depend on the order of
/// arrival (dk and dv are deterministic). Per tile and warp: 5 D / 2 mma (160 at D = 64).
///
/// Shared memory (dynamic): K, V (64 x D each, once), two Q and two dO tiles, lse and Di (64 floats
/// each, two buffers); dS overlays the dO tile just consumed. 48.5 KB at D = 64, 97 KB at D = 128 (both
/// past the 48 KB default: opted in). Workspace: Di (B H T floats) and the dQ accumulator (B H T D floats).
///
/// The plain path (CPU accelerator in CI) runs the same loops with float dot products over the same
/// tiles, P^T and dS^T handed over through shared scratch tiles.
/// Launch: <see cref="Threads"/> threads; grid (ceil(S / 64), B Hkv).
/// </summary>
internal static class AttentionMmaBackwardKernels
{
    public const int Threads = 128;
    private const int Block = 64;

    public static bool Supports(int d) => d == 64 || d == 128;

    /// <summary>Dynamic shared memory of a launch (+ 256 bytes to align the tiles on the tensor-core path; scratch tiles on the plain one).</summary>
    public static int SharedBytes(int d, bool tensorCores) =>
        (tensorCores ? 256 : 16 * 64 * 2 * 4 + Block * Block * 2) + 6 * Block * d * 2 + 4 * Block * 4;

    /// <summary>Grid (ceil(S / 64), B Hkv): dk, dv of the block's keys, and their share of dq into <paramref name="dqAccum"/>.</summary>
    public static void Backward<TE, TP, THd, TDr>(ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v, ArrayView<ushort> dout,
        ArrayView<float> lse, ArrayView<float> delta, ArrayView<ushort> dk, ArrayView<ushort> dv, ArrayView<float> dqAccum,
        ulong qAddress, ulong kAddress, ulong vAddress, ulong doAddress, AttentionParams p)
        where TE : struct, IHalfFormat where TP : struct, IAttentionPath where THd : struct, IHeadDim where TDr : struct, IDropout
    {
        bool tc = default(TP).TensorCores;
        int d = default(THd).D, rowBytes = 2 * d, tileBytes = Block * rowBytes;
        bool d128 = d == 128;
        int tid = Group.IdxX, threads = tc ? Threads : Group.DimX, kb = Grid.IdxX, kvh = Grid.IdxY;
        int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        var smem = SharedMemory.GetDynamic<ushort>();
        uint sbase = tc ? (Ptx.DynamicSharedBase() + 255u) & ~255u : 0u;
        // Layout (bytes): K, V, Q[2], dO[2] (64 x D each), lse[2], Di[2] (64 floats each), then the plain path's scratch.
        int kTile = 0, vTile = tileBytes, qTiles = 2 * tileBytes, doTiles = 4 * tileBytes, rowTerms = 6 * tileBytes;
        int scratch = rowTerms + 4 * Block * 4;
        var rowTerm = smem.Cast<float>();

        int j0 = kb * Block;
        long kvRow0 = (long)kvh * p.S;
        int group = p.H / p.Hkv, b = kvh / p.Hkv, hk = kvh - b * p.Hkv;   // once per block
        int firstRow = p.FirstRowSeeing(j0);
        int firstTile = firstRow >> 6 << 6;                                 // query tiles start at multiples of 64
        int tilesPerHead = firstTile < p.T ? (p.T - firstTile + Block - 1) >> 6 : 0;
        int total = group * tilesPerHead;
        int keyA = j0 + warp * 16 + g, keyB = keyA + 8;
        float scale = p.Scale * AttentionMmaKernels.Log2E;

        // This thread's chunks of a 64-row tile (D / 16 of them, as in the forward kernel's K/V staging): 128 threads.
        int chunkRow = d128 ? tid >> 4 : tid >> 3, chunk = d128 ? tid & 15 : tid & 7;
        int chunkDst = Offset(chunkRow, chunk, rowBytes);
        long chunkSrc = (long)chunkRow * d + chunk * 8;

        if (tc)
        {
            StageRows(sbase + (uint)(kTile + chunkDst), kAddress + (ulong)(((kvRow0 + j0) * d + chunkSrc) * 2), p.S - j0 - chunkRow, d128);
            StageRows(sbase + (uint)(vTile + chunkDst), vAddress + (ulong)(((kvRow0 + j0) * d + chunkSrc) * 2), p.S - j0 - chunkRow, d128);
        }
        else
        {
            StagePlain(k, (kvRow0 + j0) * d, p.S - j0, Block, d, smem, kTile, tid, threads);
            StagePlain(v, (kvRow0 + j0) * d, p.S - j0, Block, d, smem, vTile, tid, threads);
        }

        // Tile 0's Q, dO, lse and Di.
        int bh = b * p.H + hk * group, i0 = firstTile;
        if (total > 0)
        {
            StageQdo<TP>(q, dout, smem, sbase, qAddress, doAddress, bh, i0, p, chunkDst, chunkSrc, chunkRow, qTiles, doTiles, tileBytes, d, tid, threads, 0);
            StoreRowTerms(rowTerm, rowTerms / 4, lse, delta, bh, i0, tid, threads, p);
        }
        if (tc) Commit();

        Frags8 dkLo = default, dkHi = default, dvLo = default, dvHi = default;
        for (int it = 0; it < total; it++)
        {
            int buf = it & 1;
            // The next tile: the next 64 rows of this head, or the first tile of the next head of the group.
            int nextBh = bh, nextI0 = i0 + Block;
            if (nextI0 >= p.T)
            {
                nextBh = bh + 1;
                nextI0 = firstTile;
            }
            bool hasNext = it + 1 < total;
            if (tc) WaitAll();
            Group.Barrier(); // tile it (and its row terms) in place; everyone is done with the other buffers
            float nextTerm = 0f;
            if (hasNext)
            {
                StageQdo<TP>(q, dout, smem, sbase, qAddress, doAddress, nextBh, nextI0, p, chunkDst, chunkSrc, chunkRow, qTiles, doTiles,
                    tileBytes, d, tid, threads, buf ^ 1);
                if (tc) nextTerm = RowTerm(lse, delta, nextBh, nextI0, tid, p); // into registers now, into shared memory after the math
            }
            if (tc) Commit();

            int qTile = qTiles + buf * tileBytes, doTile = doTiles + buf * tileBytes;
            int lseAt = rowTerms / 4 + buf * Block, diAt = lseAt + 2 * Block;
            bool masked = i0 + Block > p.T || j0 + Block > p.S || (p.Causal != 0 && i0 < j0 + Block - 1 - (p.S - p.T));

            // S^T and P^T (rows: the warp's 16 keys; columns: the tile's 64 queries).
            Frags8 s = tc
                ? Product<TE>(LoadA(sbase + (uint)kTile + RowsAddress(warp * 16, lane, rowBytes, bLayout: false), d128), sbase + (uint)qTile + RowsAddress(0, lane, rowBytes, bLayout: true), rowBytes, d128)
                : ProductPlain<TE>(smem, kTile, warp * 16, qTile, rowBytes, d, g, t);
            s = ColumnExp2(s, rowTerm, lseAt, scale, t);
            if (masked) s = MaskColumns(s, p, i0 + 2 * t, keyA, keyB);
            Frags8 sDropped = s, keep = default;
            if (default(TDr).Enabled)
            {
                keep = ColumnKeep(p, bh, i0 + 2 * t, keyA, keyB);
                sDropped = Multiply(s, keep);
            }

            // dV += P'^T dO; dP^T = V dO^T.
            if (tc)
            {
                (dvLo, dvHi) = AccumulateTc<TE>(dvLo, dvHi, sDropped, sbase + (uint)doTile + TransAddress(lane, rowBytes), rowBytes, d128);
            }
            else
            {
                Group.Barrier();
                StoreWeights<TE>(sDropped, smem, scratch + warp * 16 * 64 * 2, g, t);
                Group.Barrier();
                dvLo = AccumulatePlain<TE>(dvLo, smem, scratch + warp * 16 * 64 * 2, doTile, rowBytes, 0, g, t);
                if (d128) dvHi = AccumulatePlain<TE>(dvHi, smem, scratch + warp * 16 * 64 * 2, doTile, rowBytes, 64, g, t);
            }
            Frags8 dp = tc
                ? Product<TE>(LoadA(sbase + (uint)vTile + RowsAddress(warp * 16, lane, rowBytes, bLayout: false), d128), sbase + (uint)doTile + RowsAddress(0, lane, rowBytes, bLayout: true), rowBytes, d128)
                : ProductPlain<TE>(smem, vTile, warp * 16, doTile, rowBytes, d, g, t);
            if (default(TDr).Enabled) dp = Multiply(dp, keep);

            // dS^T = P^T (dP'^T - Di); dK += dS^T Q.
            var ds = ColumnGrad(s, dp, rowTerm, diAt, t);
            if (tc)
            {
                (dkLo, dkHi) = AccumulateTc<TE>(dkLo, dkHi, ds, sbase + (uint)qTile + TransAddress(lane, rowBytes), rowBytes, d128);
            }
            else
            {
                Group.Barrier();
                StoreWeights<TE>(ds, smem, scratch + warp * 16 * 64 * 2, g, t);
                Group.Barrier();
                dkLo = AccumulatePlain<TE>(dkLo, smem, scratch + warp * 16 * 64 * 2, qTile, rowBytes, 0, g, t);
                if (d128) dkHi = AccumulatePlain<TE>(dkHi, smem, scratch + warp * 16 * 64 * 2, qTile, rowBytes, 64, g, t);
            }

            // dS^T to shared memory (over the dO tile: every warp is done with it), then dQ rows 16 warp.. = dS K.
            int dsTile = tc ? doTile : scratch + 4 * 16 * 64 * 2;
            Group.Barrier();
            StoreTransposedPairs<TE>(ds, smem, dsTile, warp * 16 + g, t);
            Group.Barrier();
            Frags8 dqLo, dqHi = default;
            if (tc)
            {
                uint dsA = sbase + (uint)dsTile + DsAddress(warp, lane);
                uint kB = sbase + (uint)kTile + TransAddress(lane, rowBytes);
                var a0 = LdT(dsA);
                var a1 = LdT(dsA + 2048);
                var a2 = LdT(dsA + 4096);
                var a3 = LdT(dsA + 6144);
                uint step16 = (uint)(16 * rowBytes);
                dqLo = TransStep<TE>(default, a0, kB, 0);
                dqLo = TransStep<TE>(dqLo, a1, kB + step16, 0);
                dqLo = TransStep<TE>(dqLo, a2, kB + 2 * step16, 0);
                dqLo = TransStep<TE>(dqLo, a3, kB + 3 * step16, 0);
                if (d128)
                {
                    dqHi = TransStep<TE>(default, a0, kB, 4);
                    dqHi = TransStep<TE>(dqHi, a1, kB + step16, 4);
                    dqHi = TransStep<TE>(dqHi, a2, kB + 2 * step16, 4);
                    dqHi = TransStep<TE>(dqHi, a3, kB + 3 * step16, 4);
                }
            }
            else
            {
                dqLo = AccumulateTransposedPlain<TE>(default, smem, dsTile, kTile, rowBytes, warp * 16, 0, g, t);
                if (d128) dqHi = AccumulateTransposedPlain<TE>(default, smem, dsTile, kTile, rowBytes, warp * 16, 64, g, t);
            }
            int qRow = i0 + warp * 16 + g;
            AddRows(dqAccum, dqLo, bh, qRow, 0, p, d, t);
            if (d128) AddRows(dqAccum, dqHi, bh, qRow, 64, p, d, t);

            if (hasNext && tc) rowTerm[rowTerms / 4 + (buf ^ 1) * Block + (tid & 63) + (tid >> 6) * 2 * Block] = nextTerm;
            else if (hasNext) StoreRowTerms(rowTerm, rowTerms / 4 + (buf ^ 1) * Block, lse, delta, nextBh, nextI0, tid, threads, p);
            (bh, i0) = (nextBh, nextI0);
        }
        if (tc) WaitAll();

        var dk32 = dk.Cast<uint>();
        var dv32 = dv.Cast<uint>();
        int words = d >> 1;
        if (keyA < p.S)
        {
            long word = (kvRow0 + keyA) * words + t;
            StoreRow<TE>(dkLo, dk32, word, p.Scale, rowB: false);
            StoreRow<TE>(dvLo, dv32, word, 1f, rowB: false);
            if (d128)
            {
                StoreRow<TE>(dkHi, dk32, word + 32, p.Scale, rowB: false);
                StoreRow<TE>(dvHi, dv32, word + 32, 1f, rowB: false);
            }
        }
        if (keyB < p.S)
        {
            long word = (kvRow0 + keyB) * words + t;
            StoreRow<TE>(dkLo, dk32, word, p.Scale, rowB: true);
            StoreRow<TE>(dvLo, dv32, word, 1f, rowB: true);
            if (d128)
            {
                StoreRow<TE>(dkHi, dk32, word + 32, p.Scale, rowB: true);
                StoreRow<TE>(dvHi, dv32, word + 32, 1f, rowB: true);
            }
        }
    }

    /// <summary>Di = dout . out per flat query row (grid-stride, explicitly grouped).</summary>
    public static void Delta<TS, TE>(ArrayView<TS> dout, ArrayView<TS> o, ArrayView<float> delta, int d, int rows)
        where TS : unmanaged where TE : struct, IElement<TS, float>
    {
        TE e = default;
        int stride = Grid.DimX * Group.DimX;
        for (int r = Grid.IdxX * Group.DimX + Group.IdxX; r < rows; r += stride)
        {
            long first = (long)r * d;
            float sum = 0f;
            for (int c = 0; c < d; c++) sum += e.Load(dout[first + c]) * e.Load(o[first + c]);
            delta[r] = sum;
        }
    }

    /// <summary>dq = scale dqAccum, rounded to 16 bits (grid-stride).</summary>
    public static void FinishDq<TE>(ArrayView<float> dqAccum, ArrayView<ushort> dq, float scale, int n) where TE : struct, IHalfFormat
    {
        var e = default(TE);
        int stride = Grid.DimX * Group.DimX;
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += stride) dq[i] = e.Store(dqAccum[i] * scale);
    }

    // ---- staging ----

    /// <summary>A 64-row tile's chunks of this thread (D / 16: 4096 bytes apart in shared and global memory); rows at or past the end zero-filled.</summary>
    private static void StageRows(uint dst, ulong src, int rowsLeft, bool d128)
    {
        int step = d128 ? 8 : 16; // 128 threads: 16 rows apart at D = 64, 8 at D = 128
        CopyAsync(dst, src, rowsLeft > 0 ? 16u : 0u);
        CopyAsync(dst + 2048, src + 2048, rowsLeft > step ? 16u : 0u);
        CopyAsync(dst + 4096, src + 4096, rowsLeft > 2 * step ? 16u : 0u);
        CopyAsync(dst + 6144, src + 6144, rowsLeft > 3 * step ? 16u : 0u);
        if (d128)
        {
            CopyAsync(dst + 8192, src + 8192, rowsLeft > 4 * step ? 16u : 0u);
            CopyAsync(dst + 10240, src + 10240, rowsLeft > 5 * step ? 16u : 0u);
            CopyAsync(dst + 12288, src + 12288, rowsLeft > 6 * step ? 16u : 0u);
            CopyAsync(dst + 14336, src + 14336, rowsLeft > 7 * step ? 16u : 0u);
        }
    }

    /// <summary>Query tile (bh, i0)'s Q and dO rows into buffer <paramref name="buf"/>.</summary>
    private static void StageQdo<TP>(ArrayView<ushort> q, ArrayView<ushort> dout, ArrayView<ushort> smem, uint sbase, ulong qAddress, ulong doAddress,
        int bh, int i0, AttentionParams p, int chunkDst, long chunkSrc, int chunkRow, int qTiles, int doTiles, int tileBytes, int d, int tid, int threads, int buf)
        where TP : struct, IAttentionPath
    {
        long first = ((long)bh * p.T + i0) * d;
        if (default(TP).TensorCores)
        {
            ulong offset = (ulong)((first + chunkSrc) * 2);
            StageRows(sbase + (uint)(qTiles + buf * tileBytes + chunkDst), qAddress + offset, p.T - i0 - chunkRow, d == 128);
            StageRows(sbase + (uint)(doTiles + buf * tileBytes + chunkDst), doAddress + offset, p.T - i0 - chunkRow, d == 128);
            return;
        }
        StagePlain(q, first, p.T - i0, Block, d, smem, qTiles + buf * tileBytes, tid, threads);
        StagePlain(dout, first, p.T - i0, Block, d, smem, doTiles + buf * tileBytes, tid, threads);
    }

    /// <summary>
    /// Row term x of tile (bh, i0): lse (x = 0..63) in base-2 units, or Di (x = 64..127), of row i0 + x % 64; rows past T
    /// get lse = +inf (so P = 0) and Di = 0. Thread x stages term x on the tensor-core path (128 threads).
    /// </summary>
    private static float RowTerm(ArrayView<float> lse, ArrayView<float> delta, int bh, int i0, int x, AttentionParams p)
    {
        int row = i0 + (x & 63);
        bool live = row < p.T;
        long at = (long)bh * p.T + row;
        if (x < 64) return live ? lse[at] * AttentionMmaKernels.Log2E : float.PositiveInfinity;
        return live ? delta[at] : 0f;
    }

    /// <summary>All 128 row terms of tile (bh, i0) into the buffer at float index <paramref name="at"/> (lse at +0, Di at + 2 * 64).</summary>
    private static void StoreRowTerms(ArrayView<float> rowTerm, int at, ArrayView<float> lse, ArrayView<float> delta, int bh, int i0, int tid, int threads, AttentionParams p)
    {
        for (int x = tid; x < 2 * Block; x += threads) rowTerm[at + (x & 63) + (x >> 6) * 2 * Block] = RowTerm(lse, delta, bh, i0, x, p);
    }

    // ---- per-entry terms (columns are queries) ----

    /// <summary>P^T = exp2(s scale - lse2[query]) with the lse of columns 8 n + 2t (+1) from shared memory.</summary>
    private static Frags8 ColumnExp2(Frags8 s, ArrayView<float> rowTerm, int lseAt, float scale, int t)
    {
        int c = lseAt + 2 * t;
        s.F0 = ColumnExp2(s.F0, rowTerm[c], rowTerm[c + 1], scale); s.F1 = ColumnExp2(s.F1, rowTerm[c + 8], rowTerm[c + 9], scale);
        s.F2 = ColumnExp2(s.F2, rowTerm[c + 16], rowTerm[c + 17], scale); s.F3 = ColumnExp2(s.F3, rowTerm[c + 24], rowTerm[c + 25], scale);
        s.F4 = ColumnExp2(s.F4, rowTerm[c + 32], rowTerm[c + 33], scale); s.F5 = ColumnExp2(s.F5, rowTerm[c + 40], rowTerm[c + 41], scale);
        s.F6 = ColumnExp2(s.F6, rowTerm[c + 48], rowTerm[c + 49], scale); s.F7 = ColumnExp2(s.F7, rowTerm[c + 56], rowTerm[c + 57], scale);
        return s;
    }

    private static Frag ColumnExp2(Frag f, float lse0, float lse1, float scale) => new()
    {
        C0 = FastExp2(f.C0 * scale - lse0),
        C1 = FastExp2(f.C1 * scale - lse1),
        C2 = FastExp2(f.C2 * scale - lse0),
        C3 = FastExp2(f.C3 * scale - lse1),
    };

    /// <summary>Zero where the key is past S or not visible to the query (rows past T already have P = 0).</summary>
    private static Frags8 MaskColumns(Frags8 s, AttentionParams p, int q0, int keyA, int keyB)
    {
        s.F0 = MaskColumns(s.F0, p, q0, keyA, keyB); s.F1 = MaskColumns(s.F1, p, q0 + 8, keyA, keyB);
        s.F2 = MaskColumns(s.F2, p, q0 + 16, keyA, keyB); s.F3 = MaskColumns(s.F3, p, q0 + 24, keyA, keyB);
        s.F4 = MaskColumns(s.F4, p, q0 + 32, keyA, keyB); s.F5 = MaskColumns(s.F5, p, q0 + 40, keyA, keyB);
        s.F6 = MaskColumns(s.F6, p, q0 + 48, keyA, keyB); s.F7 = MaskColumns(s.F7, p, q0 + 56, keyA, keyB);
        return s;
    }

    private static Frag MaskColumns(Frag f, AttentionParams p, int query, int keyA, int keyB)
    {
        int end0 = p.VisibleEnd(query), end1 = p.VisibleEnd(query + 1);
        f.C0 = keyA < end0 ? f.C0 : 0f;
        f.C1 = keyA < end1 ? f.C1 : 0f;
        f.C2 = keyB < end0 ? f.C2 : 0f;
        f.C3 = keyB < end1 ? f.C3 : 0f;
        return f;
    }

    private static Frags8 ColumnKeep(AttentionParams p, int bh, int q0, int keyA, int keyB)
    {
        Frags8 k;
        k.F0 = KeepFrag(p, bh, q0, keyA, keyB); k.F1 = KeepFrag(p, bh, q0 + 8, keyA, keyB);
        k.F2 = KeepFrag(p, bh, q0 + 16, keyA, keyB); k.F3 = KeepFrag(p, bh, q0 + 24, keyA, keyB);
        k.F4 = KeepFrag(p, bh, q0 + 32, keyA, keyB); k.F5 = KeepFrag(p, bh, q0 + 40, keyA, keyB);
        k.F6 = KeepFrag(p, bh, q0 + 48, keyA, keyB); k.F7 = KeepFrag(p, bh, q0 + 56, keyA, keyB);
        return k;
    }

    private static Frag KeepFrag(AttentionParams p, int bh, int query, int keyA, int keyB) => new()
    {
        C0 = p.Keep(bh, query, keyA),
        C1 = p.Keep(bh, query + 1, keyA),
        C2 = p.Keep(bh, query, keyB),
        C3 = p.Keep(bh, query + 1, keyB),
    };

    private static Frags8 Multiply(Frags8 a, Frags8 b)
    {
        a.F0 = Multiply(a.F0, b.F0); a.F1 = Multiply(a.F1, b.F1); a.F2 = Multiply(a.F2, b.F2); a.F3 = Multiply(a.F3, b.F3);
        a.F4 = Multiply(a.F4, b.F4); a.F5 = Multiply(a.F5, b.F5); a.F6 = Multiply(a.F6, b.F6); a.F7 = Multiply(a.F7, b.F7);
        return a;
    }

    private static Frag Multiply(Frag a, Frag b) => new() { C0 = a.C0 * b.C0, C1 = a.C1 * b.C1, C2 = a.C2 * b.C2, C3 = a.C3 * b.C3 };

    /// <summary>dS^T = P^T (dP^T - Di[query]), Di of columns 8 n + 2t (+1) from shared memory.</summary>
    private static Frags8 ColumnGrad(Frags8 w, Frags8 dp, ArrayView<float> rowTerm, int diAt, int t)
    {
        int c = diAt + 2 * t;
        w.F0 = ColumnGrad(w.F0, dp.F0, rowTerm[c], rowTerm[c + 1]); w.F1 = ColumnGrad(w.F1, dp.F1, rowTerm[c + 8], rowTerm[c + 9]);
        w.F2 = ColumnGrad(w.F2, dp.F2, rowTerm[c + 16], rowTerm[c + 17]); w.F3 = ColumnGrad(w.F3, dp.F3, rowTerm[c + 24], rowTerm[c + 25]);
        w.F4 = ColumnGrad(w.F4, dp.F4, rowTerm[c + 32], rowTerm[c + 33]); w.F5 = ColumnGrad(w.F5, dp.F5, rowTerm[c + 40], rowTerm[c + 41]);
        w.F6 = ColumnGrad(w.F6, dp.F6, rowTerm[c + 48], rowTerm[c + 49]); w.F7 = ColumnGrad(w.F7, dp.F7, rowTerm[c + 56], rowTerm[c + 57]);
        return w;
    }

    private static Frag ColumnGrad(Frag w, Frag dp, float d0, float d1)
        => new() { C0 = w.C0 * (dp.C0 - d0), C1 = w.C1 * (dp.C1 - d1), C2 = w.C2 * (dp.C2 - d0), C3 = w.C3 * (dp.C3 - d1) };

    // ---- tensor-core pieces ----

    /// <summary>acc (16 x D: lo and hi 64 columns) += A B with A the 16 x 64 fragments <paramref name="w"/> and B a [64][D] tile read with .trans.</summary>
    private static (Frags8, Frags8) AccumulateTc<TE>(Frags8 lo, Frags8 hi, Frags8 w, uint bTrans, int rowBytes, bool d128) where TE : struct, IHalfFormat
    {
        uint step16 = (uint)(16 * rowBytes);
        var a0 = AsA<TE>(w, 0);
        var a1 = AsA<TE>(w, 1);
        var a2 = AsA<TE>(w, 2);
        var a3 = AsA<TE>(w, 3);
        lo = TransStep<TE>(lo, a0, bTrans, 0);
        lo = TransStep<TE>(lo, a1, bTrans + step16, 0);
        lo = TransStep<TE>(lo, a2, bTrans + 2 * step16, 0);
        lo = TransStep<TE>(lo, a3, bTrans + 3 * step16, 0);
        if (d128)
        {
            hi = TransStep<TE>(hi, a0, bTrans, 4);
            hi = TransStep<TE>(hi, a1, bTrans + step16, 4);
            hi = TransStep<TE>(hi, a2, bTrans + 2 * step16, 4);
            hi = TransStep<TE>(hi, a3, bTrans + 3 * step16, 4);
        }
        return (lo, hi);
    }

    /// <summary>
    /// This lane's ldmatrix.trans address of the A fragments of dS (rows: the warp's 16 queries, k: keys) in the dS^T tile
    /// ([key][64 queries], 128-byte rows, swizzled): matrices j are (queries (j % 2) * 8.., keys (j / 2) * 8..), so the
    /// lane points at key row (j / 2) * 8 + r, chunk 2 warp + j % 2; key step s adds 16 rows (2048 bytes).
    /// </summary>
    private static uint DsAddress(int warp, int lane)
    {
        int j = lane >> 3, r = lane & 7;
        return (uint)Offset((j >> 1) * 8 + r, 2 * warp + (j & 1), 128);
    }

    /// <summary>Stores the lane's dS^T pairs (rows key, key + 8; queries 8 n + 2t, + 1) into the [64][64] dS^T tile.</summary>
    private static void StoreTransposedPairs<TE>(Frags8 s, ArrayView<ushort> smem, int tile, int key, int t) where TE : struct, IHalfFormat
    {
        var w = smem.Cast<uint>();
        StorePair<TE>(w, tile, key, 0, t, s.F0); StorePair<TE>(w, tile, key, 1, t, s.F1);
        StorePair<TE>(w, tile, key, 2, t, s.F2); StorePair<TE>(w, tile, key, 3, t, s.F3);
        StorePair<TE>(w, tile, key, 4, t, s.F4); StorePair<TE>(w, tile, key, 5, t, s.F5);
        StorePair<TE>(w, tile, key, 6, t, s.F6); StorePair<TE>(w, tile, key, 7, t, s.F7);
    }

    private static void StorePair<TE>(ArrayView<uint> w, int tile, int key, int n, int t, Frag f) where TE : struct, IHalfFormat
    {
        var e = default(TE);
        // Query 8 n + 2t is element 2t of 16-byte chunk n: byte 4t of the chunk.
        w[(tile + Offset(key, n, 128) + 4 * t) >> 2] = e.PackBits(f.C0, f.C1);
        w[(tile + Offset(key + 8, n, 128) + 4 * t) >> 2] = e.PackBits(f.C2, f.C3);
    }

    /// <summary>Adds the lane's share of a 16 x 64 dQ block (rows row, row + 8; columns col0 + 8 n + 2t, + 1) to the accumulator; rows past T are skipped.</summary>
    private static void AddRows(ArrayView<float> dq, Frags8 f, int bh, int row, int col0, AttentionParams p, int d, int t)
    {
        long a = ((long)bh * p.T + row) * d + col0 + 2 * t, b = a + 8L * d;
        bool liveA = row < p.T, liveB = row + 8 < p.T;
        AddFrag(dq, f.F0, a, b, liveA, liveB); AddFrag(dq, f.F1, a + 8, b + 8, liveA, liveB);
        AddFrag(dq, f.F2, a + 16, b + 16, liveA, liveB); AddFrag(dq, f.F3, a + 24, b + 24, liveA, liveB);
        AddFrag(dq, f.F4, a + 32, b + 32, liveA, liveB); AddFrag(dq, f.F5, a + 40, b + 40, liveA, liveB);
        AddFrag(dq, f.F6, a + 48, b + 48, liveA, liveB); AddFrag(dq, f.F7, a + 56, b + 56, liveA, liveB);
    }

    private static void AddFrag(ArrayView<float> dq, Frag f, long a, long b, bool liveA, bool liveB)
    {
        if (liveA)
        {
            Atomic.Add(ref dq[a], f.C0);
            Atomic.Add(ref dq[a + 1], f.C1);
        }
        if (liveB)
        {
            Atomic.Add(ref dq[b], f.C2);
            Atomic.Add(ref dq[b + 1], f.C3);
        }
    }

    /// <summary>The plain twin of dQ = dS K: o (rows row0 + g, + 8; columns col0..) += sum over keys of dS^T[key][row] K[key][col].</summary>
    private static Frags8 AccumulateTransposedPlain<TE>(Frags8 o, ArrayView<ushort> smem, int dsTile, int kTile, int rowBytes, int row0, int col0, int g, int t)
        where TE : struct, IHalfFormat
    {
        int c = col0 + 2 * t;
        o.F0 = DqFrag<TE>(o.F0, smem, dsTile, kTile, rowBytes, row0 + g, c); o.F1 = DqFrag<TE>(o.F1, smem, dsTile, kTile, rowBytes, row0 + g, c + 8);
        o.F2 = DqFrag<TE>(o.F2, smem, dsTile, kTile, rowBytes, row0 + g, c + 16); o.F3 = DqFrag<TE>(o.F3, smem, dsTile, kTile, rowBytes, row0 + g, c + 24);
        o.F4 = DqFrag<TE>(o.F4, smem, dsTile, kTile, rowBytes, row0 + g, c + 32); o.F5 = DqFrag<TE>(o.F5, smem, dsTile, kTile, rowBytes, row0 + g, c + 40);
        o.F6 = DqFrag<TE>(o.F6, smem, dsTile, kTile, rowBytes, row0 + g, c + 48); o.F7 = DqFrag<TE>(o.F7, smem, dsTile, kTile, rowBytes, row0 + g, c + 56);
        return o;
    }

    private static Frag DqFrag<TE>(Frag f, ArrayView<ushort> smem, int dsTile, int kTile, int rowBytes, int row, int col) where TE : struct, IHalfFormat
    {
        for (int key = 0; key < Block; key++)
        {
            float a = At<TE>(smem, dsTile, key, row, 128), b = At<TE>(smem, dsTile, key, row + 8, 128);
            float k0 = At<TE>(smem, kTile, key, col, rowBytes), k1 = At<TE>(smem, kTile, key, col + 1, rowBytes);
            f.C0 += a * k0;
            f.C1 += a * k1;
            f.C2 += b * k0;
            f.C3 += b * k1;
        }
        return f;
    }
}
