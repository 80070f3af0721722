using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// bf16 / fp16 GEMM on tensor cores with fp32 accumulation: mma.sync.m16n8k16 fed by ldmatrix from a
/// 3-stage cp.async pipeline, built to CUTLASS's sm80 instruction budget (at most 4 instructions per
/// mma in the main loop; the kernel report measures it from SASS). C has the inputs' format; the
/// epilogue (alpha, beta, bias, activation) runs in fp32 and rounds once.
///
/// Block 128 x 128 x 32, 128 threads = 4 warps in a 2 (M) x 2 (N) grid, each warp a 64 x 64 tile of C:
/// 4 x 8 mma tiles of 16 x 8, 128 fp32 accumulators per lane. Per 16-deep step a warp loads its A
/// fragments with four ldmatrix.x4 and its B fragments with four (two n8 tiles each), then issues 32
/// mma: 8 shared loads of 512 bytes per 32 mma, half of what 64 x 32 warp tiles need (Hopper's
/// mma.sync rate would otherwise be limited by shared-memory bandwidth).
///
/// Shared memory: per stage one tile of each operand (8 KB each, 48 KB for 3 stages: the static limit,
/// two blocks per SM on Ada), stored as rows of its contiguous axis: a k-contiguous operand as
/// [mn][32 k] (64-byte rows), an mn-contiguous one as [k][128 mn] (256-byte rows). ldmatrix reads 8 rows
/// x 16 bytes at a time; the 16-byte chunks of each row are XOR-swizzled (<see cref="Swizzle"/>) so the
/// 8 rows land in 8 different bank groups with no padding. The k-contiguous tile is read with plain
/// ldmatrix, the mn-contiguous one with ldmatrix.trans: NN, NT, TN and TT share one kernel.
///
/// Why the main loop is short (SASS: 64 HMMA, 16 LDSM, 8 LDGSTS and ~30 other instructions per tile):
/// - Every address is fixed per thread except for a per-tile constant: each thread copies the same 8
///   chunks (row, chunk) of every tile, so its global addresses advance by a constant step (64 bytes
///   along k, or 32 rows) and its shared destinations are one base plus immediates (2048-byte apart
///   rows keep the same swizzle bits). The ldmatrix row addresses are precomputed per lane; the stage
///   and the k16 step are added as immediates or one register.
/// - No division or remainder anywhere in the loop: stage rotation by compare-and-reset, swizzles by
///   shifts and masks.
/// - Edges cost nothing per tile: rows or columns past M or N copy with src-size 0 (cp.async
///   zero-fills), fixed per thread; the K remainder is the FIRST tile (tile t covers k from
///   32 t - s, s = 32 tiles - K, so only tile 0 reaches below 0 and is masked, in the prologue), so
///   the loop never tests k. The last two tiles, already in flight, run in a drain loop without loads.
///
/// Grid: one block per 128 x 128 tile of C in grouped order (<see cref="GroupM"/> block rows at a time,
/// column by column), so blocks running together share A's rows and B's columns in L2; y is the batch.
///
/// The code path is a type parameter (<see cref="IGemmPath"/>), so each instantiation holds one: cp.async
/// needs 16-byte aligned chunks (leading dimensions, batch strides and offsets multiples of 8 elements, and
/// K too when A or B^T is k-contiguous, so that the K shift keeps chunks whole), otherwise
/// <see cref="CudaPlainCopy"/> copies element by element (slower, same results); on the CPU accelerator
/// <see cref="CpuReference"/> copies plainly and each lane sums its outputs from the swizzled tiles
/// (<see cref="WarpStepReference"/>). The fragment path itself is tested on one warp with ldmatrix and mma
/// emulated lane by lane (<see cref="EmulatedFragments{TF}"/>, <see cref="WarpMma"/>).
/// </summary>
internal static class HgemmMma
{
    public const int BM = 128, BN = 128, BK = 32, Stages = 3, Threads = 128, GroupM = 8;
    internal const int TileBytes = BM * BK * 2;     // one operand's tile (BM == BN): 8 KB
    internal const int StageBytes = 2 * TileBytes;  // A then B: 16 KB

    internal static void Kernel<TF, TA, TB, TP>(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, ArrayView<ushort> bias,
        ulong aAddress, ulong bAddress, GemmArgs p)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout where TP : struct, IGemmPath
    {
        int tid = Group.IdxX, pid = Grid.IdxX, batch = Grid.IdxY;
        var (mBlock, nBlock) = BlockOf(pid, p.M, p.N);
        int m0 = mBlock * BM, n0 = nBlock * BN;
        // The only shared allocation (__shared_alloca0 in PTX), declared as 16-byte elements so that PTX aligns
        // it to 16 bytes, as cp.async and ldmatrix need (a ushort array would get .align 2).
        var smem = SharedMemory.Allocate<Float4>(Stages * StageBytes / 16).Cast<ushort>();
        uint smemBase = default(TP).Async || default(TP).TensorCores ? Ptx.SharedBase() : 0u;
        var ab = a.SubView(batch * p.BatchStrideA);
        var bb = b.SubView(batch * p.BatchStrideB);
        var cb = c.SubView(batch * p.BatchStrideC);
        ulong aBase = aAddress + (ulong)(batch * p.BatchStrideA * 2), bBase = bAddress + (ulong)(batch * p.BatchStrideB * 2);

        int tiles = (p.K + BK - 1) >> 5;
        int shift = (tiles << 5) - p.K;                     // tile t covers k in [32 t - shift, 32 t - shift + 32)
        var copyA = TileCopy.Create<TA>(tid, m0, p.M, shift, p.Lda, aBase, 0);
        var copyB = TileCopy.Create<TB>(tid, n0, p.N, shift, p.Ldb, bBase, TileBytes);

        // Prologue: tiles 0 and 1 in flight (tile 0 with its k < 0 chunks masked), one commit group each.
        if (tiles > 0)
        {
            copyA.Issue<TA, TP>(smem, smemBase, ab, aBase, 0, firstTile: true);
            copyB.Issue<TB, TP>(smem, smemBase, bb, bBase, 0, firstTile: true);
        }
        Commit<TP>();
        copyA.Advance();
        copyB.Advance();
        if (tiles > 1)
        {
            copyA.Issue<TA, TP>(smem, smemBase, ab, aBase, StageBytes, firstTile: false);
            copyB.Issue<TB, TP>(smem, smemBase, bb, bBase, StageBytes, firstTile: false);
        }
        Commit<TP>();
        copyA.Advance();
        copyB.Advance();

        int warp = tid >> 5, lane = tid & 31;
        int wm = warp >> 1, wn = warp & 1;
        var fragA = FragmentRows.ForA<TA>(wm, lane);
        var fragB = FragmentRows.ForB<TB>(wn, lane);
        var acc = default(WarpAccumulators);
        int read = 0, write = 2 * StageBytes;               // byte offsets of the stages read and written this tile
        int t = 0;
        // Main loop: tile t + 2 is loaded while tile t is multiplied (every load is live: t + 2 < tiles).
        for (; t < tiles - 2; t++)
        {
            WaitForAllButNewest<TP>(); // tile t has landed (this thread's copies) ...
            Group.Barrier();       // ... and everyone's; everyone is also done with the stage tile t + 2 overwrites
            copyA.IssueMain<TA, TP>(smem, smemBase, ab, aBase, write);
            copyB.IssueMain<TB, TP>(smem, smemBase, bb, bBase, write);
            Commit<TP>();
            copyA.Advance();
            copyB.Advance();
            acc = Multiply<TF, TA, TB, TP>(smem, smemBase, read, fragA, fragB, wm, wn, lane, acc);
            read = read == 2 * StageBytes ? 0 : read + StageBytes;
            write = write == 2 * StageBytes ? 0 : write + StageBytes;
        }
        // Drain: the last two tiles are already in flight.
        for (; t < tiles; t++)
        {
            if (t == tiles - 2) WaitForAllButNewest<TP>();
            else WaitForAll<TP>();
            Group.Barrier();
            acc = Multiply<TF, TA, TB, TP>(smem, smemBase, read, fragA, fragB, wm, wn, lane, acc);
            read = read == 2 * StageBytes ? 0 : read + StageBytes;
        }
        // Lane (g, t) of the m16 x n8 tile (i, j) holds C[16 i + g][8 j + 2t, +1] and C[16 i + g + 8][8 j + 2t, +1].
        int row = m0 + wm * 64 + (lane >> 2), col = n0 + wn * 64 + 2 * (lane & 3);
        StoreRow<TF>(cb, bias, p, row, col, acc.R0);
        StoreRow<TF>(cb, bias, p, row + 16, col, acc.R1);
        StoreRow<TF>(cb, bias, p, row + 32, col, acc.R2);
        StoreRow<TF>(cb, bias, p, row + 48, col, acc.R3);
    }

    /// <summary>The two 16-deep steps of a 32-deep tile in stage <paramref name="read"/>: on tensor cores, or the plain sums.</summary>
    private static WarpAccumulators Multiply<TF, TA, TB, TP>(ArrayView<ushort> smem, uint smemBase, int read, FragmentRows fragA, FragmentRows fragB,
        int wm, int wn, int lane, WarpAccumulators acc)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout where TP : struct, IGemmPath
    {
        if (default(TP).TensorCores)
        {
            acc = WarpStep<TF, TA, TB, PtxFragments<TF>>(smem, smemBase, (uint)read, fragA, fragB, 0, acc);
            return WarpStep<TF, TA, TB, PtxFragments<TF>>(smem, smemBase, (uint)read, fragA, fragB, 1, acc);
        }
        acc = WarpStepReference<TF, TA, TB>(smem, read, wm, wn, 0, lane, acc);
        return WarpStepReference<TF, TA, TB>(smem, read, wm, wn, 16, lane, acc);
    }

    /// <summary>
    /// Block <paramref name="pid"/>'s tile (row block, column block) in grouped order: blocks run roughly in
    /// launch order, and GroupM consecutive row blocks walked column by column reuse each other's A rows and
    /// B columns from L2 (a plain row-major order streams all of B through L2 for every row block).
    /// The divisions run once per block.
    /// </summary>
    internal static (int M, int N) BlockOf(int pid, int m, int n)
    {
        int tilesM = (m + BM - 1) >> 7, tilesN = (n + BN - 1) >> 7;
        int perGroup = GroupM * tilesN;
        int group = pid / perGroup, first = group * GroupM;
        int rows = XMin(tilesM - first, GroupM);
        int inGroup = pid - group * perGroup;
        return (first + inGroup % rows, inGroup / rows);
    }

    private static int XMin(int x, int y) => x < y ? x : y;

    // ---- global -> shared ----

    /// <summary>
    /// One thread's share of copying an operand's 128 x 32 tile: 4 chunks of 16 bytes, the same (row, chunk)
    /// places of every tile, so their global addresses advance by <see cref="Step"/> per tile and their shared
    /// destinations are <see cref="Dst"/> + 2048 i.
    ///   k-contiguous ([mn][32 k]): chunk i is row (tid / 4) + 32 i, chunk tid % 4;
    ///   mn-contiguous ([k][128 mn]): chunk i is k row (tid / 16) + 8 i, chunk tid % 16.
    /// 32 rows of 64 bytes or 8 rows of 256 bytes apart are 2048 bytes in both, and their swizzle bits
    /// (row / 2 % 4, or row % 8) agree.
    /// Bytes0..3: how many bytes of chunk i exist in every tile but the first (16, 0 past the matrix edge, or
    /// the 2 (MN - column) left of a chunk that straddles it); Lo0..3: the chunk's first element that exists in
    /// the first tile (its elements at k &lt; 0 do not).
    /// </summary>
    internal struct TileCopy
    {
        public ulong A0, A1, A2, A3;
        public int Bytes0, Bytes1, Bytes2, Bytes3;
        public int Lo0, Lo1, Lo2, Lo3;
        public int Dst;
        public ulong Step;

        public static TileCopy Create<TL>(int tid, int mn0, int mnExtent, int shift, int ld, ulong baseAddress, int tileOffset)
            where TL : struct, IOperandLayout
        {
            var c = new TileCopy();
            if (default(TL).IsKInner)
            {
                int row = tid >> 2, chunk = tid & 3;
                int k = 8 * chunk - shift;                 // the chunk's first k in tile 0 (negative: before the matrix)
                int lo = k >= 0 ? 0 : XMin(-k, 8);
                c.Dst = tileOffset + Swizzle(row, chunk, 4) * 2;
                c.Step = 2 * BK;
                (c.A0, c.Bytes0, c.Lo0) = KChunk(baseAddress, mn0 + row, mnExtent, k, ld, lo);
                (c.A1, c.Bytes1, c.Lo1) = KChunk(baseAddress, mn0 + row + 32, mnExtent, k, ld, lo);
                (c.A2, c.Bytes2, c.Lo2) = KChunk(baseAddress, mn0 + row + 64, mnExtent, k, ld, lo);
                (c.A3, c.Bytes3, c.Lo3) = KChunk(baseAddress, mn0 + row + 96, mnExtent, k, ld, lo);
            }
            else
            {
                int row = tid >> 4, chunk = tid & 15;
                int mn = mn0 + 8 * chunk;
                int bytes = 2 * XMax(XMin(mnExtent - mn, 8), 0);
                c.Dst = tileOffset + Swizzle(row, chunk, 16) * 2;
                c.Step = (ulong)(2L * BK * ld);
                (c.A0, c.Bytes0, c.Lo0) = MnChunk(baseAddress, row - shift, mn, ld, bytes);
                (c.A1, c.Bytes1, c.Lo1) = MnChunk(baseAddress, row + 8 - shift, mn, ld, bytes);
                (c.A2, c.Bytes2, c.Lo2) = MnChunk(baseAddress, row + 16 - shift, mn, ld, bytes);
                (c.A3, c.Bytes3, c.Lo3) = MnChunk(baseAddress, row + 24 - shift, mn, ld, bytes);
            }
            return c;
        }

        private static (ulong, int, int) KChunk(ulong baseAddress, int mn, int mnExtent, int k, int ld, int lo)
        {
            bool exists = mn < mnExtent;
            long index = exists ? (long)mn * ld + k : 0;
            return (baseAddress + (ulong)(index * 2), exists ? 16 : 0, lo);
        }

        private static (ulong, int, int) MnChunk(ulong baseAddress, int k, int mn, int ld, int bytes)
        {
            long index = bytes > 0 ? (long)k * ld + mn : 0;
            return (baseAddress + (ulong)(index * 2), bytes, k >= 0 ? 0 : 8);
        }

        public void Advance()
        {
            A0 += Step;
            A1 += Step;
            A2 += Step;
            A3 += Step;
        }

        /// <summary>The first two tiles (prologue): tile 0 masks the chunks' elements at k &lt; 0.</summary>
        public readonly void Issue<TL, TP>(ArrayView<ushort> smem, uint smemBase, ArrayView<ushort> x, ulong xBase, int stage, bool firstTile)
            where TL : struct, IOperandLayout where TP : struct, IGemmPath
        {
            int dst = stage + Dst;
            Chunk<TP>(smem, smemBase, x, xBase, dst, A0, Bytes0, firstTile ? Lo0 : 0);
            Chunk<TP>(smem, smemBase, x, xBase, dst + 2048, A1, Bytes1, firstTile ? Lo1 : 0);
            Chunk<TP>(smem, smemBase, x, xBase, dst + 4096, A2, Bytes2, firstTile ? Lo2 : 0);
            Chunk<TP>(smem, smemBase, x, xBase, dst + 6144, A3, Bytes3, firstTile ? Lo3 : 0);
        }

        /// <summary>A tile of the main loop: every chunk whole or absent.</summary>
        public readonly void IssueMain<TL, TP>(ArrayView<ushort> smem, uint smemBase, ArrayView<ushort> x, ulong xBase, int stage)
            where TL : struct, IOperandLayout where TP : struct, IGemmPath
        {
            int dst = stage + Dst;
            Chunk<TP>(smem, smemBase, x, xBase, dst, A0, Bytes0, 0);
            Chunk<TP>(smem, smemBase, x, xBase, dst + 2048, A1, Bytes1, 0);
            Chunk<TP>(smem, smemBase, x, xBase, dst + 4096, A2, Bytes2, 0);
            Chunk<TP>(smem, smemBase, x, xBase, dst + 6144, A3, Bytes3, 0);
        }
    }

    private static int XMax(int x, int y) => x > y ? x : y;

    /// <summary>
    /// One 16-byte chunk to shared byte offset <paramref name="dst"/>: its elements [lo, bytes / 2) from global
    /// address <paramref name="from"/>, zeros elsewhere. cp.async.cg (bypassing L1) when the path allows: src-size &lt; 16
    /// zero-fills the rest, 0 reads nothing; a chunk with lo &gt; 0 is entirely absent there (K % 8 == 0).
    /// </summary>
    private static void Chunk<TP>(ArrayView<ushort> smem, uint smemBase, ArrayView<ushort> x, ulong xBase, int dst, ulong from, int bytes, int lo)
        where TP : struct, IGemmPath
    {
        if (default(TP).Async)
        {
            uint size = lo == 0 ? (uint)bytes : 0u;
            CudaAsm.Emit("cp.async.cg.shared.global [%0], [%1], 16, %2;", smemBase + (uint)dst, from, size);
            return;
        }
        long index = (long)(from - xBase) >> 1;
        int at = dst >> 1, n = bytes >> 1;
        for (int e = 0; e < 8; e++) smem[at + e] = e >= lo && e < n ? x[index + e] : (ushort)0;
    }

    private static void Commit<TP>() where TP : struct, IGemmPath
    {
        if (default(TP).Async) CudaAsm.Emit("cp.async.commit_group;");
    }

    /// <summary>Waits until at most Stages - 2 = 1 commit group of this thread is pending.</summary>
    private static void WaitForAllButNewest<TP>() where TP : struct, IGemmPath
    {
        if (default(TP).Async) CudaAsm.Emit("cp.async.wait_group 1;");
    }

    private static void WaitForAll<TP>() where TP : struct, IGemmPath
    {
        if (default(TP).Async) CudaAsm.Emit("cp.async.wait_all;");
    }

    /// <summary>
    /// Byte offset of 16-byte chunk <paramref name="chunk"/> of row <paramref name="row"/> in a tile whose rows hold
    /// <paramref name="chunksPerRow"/> chunks (4: 64-byte rows of 32 k; 16: 256-byte rows of 128 mn), in elements.
    /// The chunk index is XORed with bits of the row so that 8 consecutive rows put a given chunk in 8 different
    /// 16-byte bank groups of a 128-byte line: rows of 64 bytes pair up in a line, hence (row / 2) % 4 for 4 chunks,
    /// row % 8 for 16.
    /// </summary>
    public static int Swizzle(int row, int chunk, int chunksPerRow)
    {
        int x = chunksPerRow == 4 ? (row >> 1) & 3 : row & 7;
        return (row * chunksPerRow + (chunk ^ x)) * 8;
    }

    // ---- shared -> registers -> tensor cores ----

    /// <summary>
    /// A lane's ldmatrix row addresses (bytes from the stage start) for one operand of its warp tile, fixed for
    /// the whole kernel. With j = lane / 8 (which 8 x 8 matrix of the x4) and r = lane % 8 (which of its rows):
    /// k-contiguous tile: the 16 x 16 block of fragment i starts i * 1024 bytes (16 rows) after fragment 0, so
    ///   P0 / P1 are fragment 0's address in k16 step 0 / 1 (step 1 is chunk XOR 2: 32 bytes XOR, not an add);
    /// mn-contiguous tile: fragment i's chunks differ by 2 i XOR the row's swizzle, so each fragment has its own
    ///   address P0..P3 (k16 step 0) and step 1 is 16 rows later: + 4096 bytes.
    /// </summary>
    internal struct FragmentRows
    {
        public uint P0, P1, P2, P3;

        /// <summary>A of the warp's rows wm * 64..: matrix j is (rows (j % 2) * 8.., k (j / 2) * 8..), i.e. a0..a3.</summary>
        public static FragmentRows ForA<TL>(int wm, int lane) where TL : struct, IOperandLayout
        {
            int j = lane >> 3, r = lane & 7;
            return default(TL).IsKInner
                ? KInner(0, wm * 64 + (j & 1) * 8 + r, j >> 1)
                : MnInner(0, (j >> 1) * 8 + r, wm * 8, j & 1, r);
        }

        /// <summary>B of the warp's columns wn * 64.., two n8 tiles per x4: matrix j is (n (j / 2) * 8.., k (j % 2) * 8..),
        /// so one x4 gives b0, b1 of n8 tile 2p, then of 2p + 1.</summary>
        public static FragmentRows ForB<TL>(int wn, int lane) where TL : struct, IOperandLayout
        {
            int j = lane >> 3, r = lane & 7;
            return default(TL).IsKInner
                ? KInner(TileBytes, wn * 64 + (j >> 1) * 8 + r, j & 1)
                : MnInner(TileBytes, (j & 1) * 8 + r, wn * 8, j >> 1, r);
        }

        private static FragmentRows KInner(int tileOffset, int row, int chunk)
        {
            int x = chunk ^ ((row >> 1) & 3);
            return new FragmentRows { P0 = (uint)(tileOffset + row * 64 + x * 16), P1 = (uint)(tileOffset + row * 64 + (x ^ 2) * 16) };
        }

        private static FragmentRows MnInner(int tileOffset, int kRow, int chunk0, int half, int r)
        {
            int rowBytes = tileOffset + kRow * 256;
            return new FragmentRows
            {
                P0 = (uint)(rowBytes + (chunk0 + ((0 + half) ^ r)) * 16),
                P1 = (uint)(rowBytes + (chunk0 + ((2 + half) ^ r)) * 16),
                P2 = (uint)(rowBytes + (chunk0 + ((4 + half) ^ r)) * 16),
                P3 = (uint)(rowBytes + (chunk0 + ((6 + half) ^ r)) * 16),
            };
        }

        /// <summary>Fragment i's address in k16 step <paramref name="step"/> (both compile-time constants after inlining).</summary>
        public readonly uint At<TL>(int i, int step) where TL : struct, IOperandLayout
        {
            if (default(TL).IsKInner) return (step == 0 ? P0 : P1) + (uint)(i * 1024);
            uint p = i == 0 ? P0 : i == 1 ? P1 : i == 2 ? P2 : P3;
            return p + (uint)(step * 4096);
        }
    }

    /// <summary>8 mma tiles of 16 x 8 side by side: one m16 row of a warp's 64 x 64 tile (Cn: columns 8n..8n+7).</summary>
    internal struct Row8
    {
        public Float4 C0, C1, C2, C3, C4, C5, C6, C7;
    }

    /// <summary>A warp's 64 x 64 tile of C: rows R0..R3 of 16, 128 floats per lane.</summary>
    internal struct WarpAccumulators
    {
        public Row8 R0, R1, R2, R3;
    }

    /// <summary>The B fragments of the warp's 8 n8 tiles for one k16 step (four ldmatrix.x4).</summary>
    internal struct BFragments
    {
        public U32x4 P0, P1, P2, P3;
    }

    /// <summary>One 16-deep step of a warp on tensor cores: 4 + 4 ldmatrix.x4, 32 mma.</summary>
    internal static WarpAccumulators WarpStep<TF, TA, TB, TFr>(ArrayView<ushort> smem, uint smemBase, uint stage, FragmentRows fa, FragmentRows fb,
        int step, WarpAccumulators acc)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout where TFr : struct, IFragments<TF>
    {
        var fr = default(TFr);
        bool transA = !default(TA).IsKInner, transB = !default(TB).IsKInner;
        var bf = new BFragments
        {
            P0 = fr.LdMatrix(smem, smemBase, stage + fb.At<TB>(0, step), transB),
            P1 = fr.LdMatrix(smem, smemBase, stage + fb.At<TB>(1, step), transB),
            P2 = fr.LdMatrix(smem, smemBase, stage + fb.At<TB>(2, step), transB),
            P3 = fr.LdMatrix(smem, smemBase, stage + fb.At<TB>(3, step), transB),
        };
        acc.R0 = MmaRow<TF, TFr>(acc.R0, fr.LdMatrix(smem, smemBase, stage + fa.At<TA>(0, step), transA), bf);
        acc.R1 = MmaRow<TF, TFr>(acc.R1, fr.LdMatrix(smem, smemBase, stage + fa.At<TA>(1, step), transA), bf);
        acc.R2 = MmaRow<TF, TFr>(acc.R2, fr.LdMatrix(smem, smemBase, stage + fa.At<TA>(2, step), transA), bf);
        acc.R3 = MmaRow<TF, TFr>(acc.R3, fr.LdMatrix(smem, smemBase, stage + fa.At<TA>(3, step), transA), bf);
        return acc;
    }

    private static Row8 MmaRow<TF, TFr>(Row8 r, U32x4 a, BFragments b) where TF : struct, IHalfFormat where TFr : struct, IFragments<TF>
    {
        var f = default(TFr);
        r.C0 = f.Mma(a, new U32x2 { X = b.P0.X, Y = b.P0.Y }, r.C0);
        r.C1 = f.Mma(a, new U32x2 { X = b.P0.Z, Y = b.P0.W }, r.C1);
        r.C2 = f.Mma(a, new U32x2 { X = b.P1.X, Y = b.P1.Y }, r.C2);
        r.C3 = f.Mma(a, new U32x2 { X = b.P1.Z, Y = b.P1.W }, r.C3);
        r.C4 = f.Mma(a, new U32x2 { X = b.P2.X, Y = b.P2.Y }, r.C4);
        r.C5 = f.Mma(a, new U32x2 { X = b.P2.Z, Y = b.P2.W }, r.C5);
        r.C6 = f.Mma(a, new U32x2 { X = b.P3.X, Y = b.P3.Y }, r.C6);
        r.C7 = f.Mma(a, new U32x2 { X = b.P3.Z, Y = b.P3.W }, r.C7);
        return r;
    }

    /// <summary>
    /// The same step without fragments, for the CPU accelerator: each lane sums, straight from the swizzled
    /// shared tiles, the 128 outputs the mma layout gives it. (Run with the lane-exact emulation, WarpStep costs
    /// ~1000 shuffles per step, each a barrier of OS threads on the CPU accelerator. Its fragments are tested on
    /// one warp by a dedicated test kernel instead.)
    /// </summary>
    internal static WarpAccumulators WarpStepReference<TF, TA, TB>(ArrayView<ushort> smem, int stage, int wm, int wn, int kk, int lane,
        WarpAccumulators acc)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int m = wm * 64 + (lane >> 2), n = wn * 64 + 2 * (lane & 3), s = stage >> 1;
        acc.R0 = RowReference<TF, TA, TB>(smem, s, m, n, kk, acc.R0);
        acc.R1 = RowReference<TF, TA, TB>(smem, s, m + 16, n, kk, acc.R1);
        acc.R2 = RowReference<TF, TA, TB>(smem, s, m + 32, n, kk, acc.R2);
        acc.R3 = RowReference<TF, TA, TB>(smem, s, m + 48, n, kk, acc.R3);
        return acc;
    }

    private static Row8 RowReference<TF, TA, TB>(ArrayView<ushort> smem, int stage, int m, int n, int kk, Row8 r)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        r.C0 = Add(r.C0, Reference<TF, TA, TB>(smem, stage, m, n, kk));
        r.C1 = Add(r.C1, Reference<TF, TA, TB>(smem, stage, m, n + 8, kk));
        r.C2 = Add(r.C2, Reference<TF, TA, TB>(smem, stage, m, n + 16, kk));
        r.C3 = Add(r.C3, Reference<TF, TA, TB>(smem, stage, m, n + 24, kk));
        r.C4 = Add(r.C4, Reference<TF, TA, TB>(smem, stage, m, n + 32, kk));
        r.C5 = Add(r.C5, Reference<TF, TA, TB>(smem, stage, m, n + 40, kk));
        r.C6 = Add(r.C6, Reference<TF, TA, TB>(smem, stage, m, n + 48, kk));
        r.C7 = Add(r.C7, Reference<TF, TA, TB>(smem, stage, m, n + 56, kk));
        return r;
    }

    private static Float4 Add(Float4 x, Float4 y) => new(x.X + y.X, x.Y + y.Y, x.Z + y.Z, x.W + y.W);

    /// <summary>Sum over 16 k of the lane's four mma outputs: (m, n), (m, n + 1), (m + 8, n), (m + 8, n + 1).</summary>
    private static Float4 Reference<TF, TA, TB>(ArrayView<ushort> smem, int stage, int m, int n, int kk)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        var f = default(TF);
        int aTile = stage, bTile = stage + TileBytes / 2;
        Float4 r = default;
        for (int k = kk; k < kk + 16; k++)
        {
            float a0 = f.Load(smem[aTile + Element<TA>(m, k)]), a1 = f.Load(smem[aTile + Element<TA>(m + 8, k)]);
            float b0 = f.Load(smem[bTile + Element<TB>(n, k)]), b1 = f.Load(smem[bTile + Element<TB>(n + 1, k)]);
            r = new Float4(r.X + a0 * b0, r.Y + a0 * b1, r.Z + a1 * b0, r.W + a1 * b1);
        }
        return r;
    }

    /// <summary>Offset (elements) of op(X)'s element (mn, k) in a stage's tile.</summary>
    internal static int Element<TLayout>(int mn, int k) where TLayout : struct, IOperandLayout =>
        default(TLayout).IsKInner ? Swizzle(mn, k >> 3, BK / 8) + (k & 7) : Swizzle(k, mn >> 3, BM / 8) + (mn & 7);

    // ---- epilogue ----

    private static void StoreRow<TF>(ArrayView<ushort> c, ArrayView<ushort> bias, in GemmArgs p, int row, int col, Row8 r)
        where TF : struct, IHalfFormat
    {
        Store<TF>(c, bias, p, row, col, r.C0); Store<TF>(c, bias, p, row, col + 8, r.C1);
        Store<TF>(c, bias, p, row, col + 16, r.C2); Store<TF>(c, bias, p, row, col + 24, r.C3);
        Store<TF>(c, bias, p, row, col + 32, r.C4); Store<TF>(c, bias, p, row, col + 40, r.C5);
        Store<TF>(c, bias, p, row, col + 48, r.C6); Store<TF>(c, bias, p, row, col + 56, r.C7);
    }

    /// <summary>The epilogue for one lane's part of an m16 x n8 tile: (row, col..col+1) and (row + 8, col..col+1).</summary>
    private static void Store<TF>(ArrayView<ushort> c, ArrayView<ushort> bias, in GemmArgs p, int row, int col, Float4 v)
        where TF : struct, IHalfFormat
    {
        StoreOne<TF>(c, bias, p, row, col, v.X);
        StoreOne<TF>(c, bias, p, row, col + 1, v.Y);
        StoreOne<TF>(c, bias, p, row + 8, col, v.Z);
        StoreOne<TF>(c, bias, p, row + 8, col + 1, v.W);
    }

    /// <summary>One output through the epilogue (on CUDA, TF's conversions are single cvt instructions: CudaFormats).</summary>
    private static void StoreOne<TF>(ArrayView<ushort> c, ArrayView<ushort> bias, in GemmArgs p, int row, int col, float acc)
        where TF : struct, IHalfFormat
    {
        if (row >= p.M || col >= p.N) return;
        var f = default(TF);
        int i = row * p.Ldc + col;
        float old = p.Beta != 0f ? f.Load(c[i]) : 0f;
        float b = p.HasBias != 0 ? f.Load(bias[col]) : 0f;
        c[i] = f.Store(GemmEpilogue.Apply(acc, old, b, p));
    }

    // ---- launch ----

    /// <summary>
    /// Whether cp.async's 16-byte chunks are aligned: leading dimensions, batch strides and view offsets multiples of
    /// 8 elements, and K when an operand is k-contiguous (the K remainder is shifted into tile 0 by whole chunks).
    /// </summary>
    public static bool CanCopyAsync(in GemmArgs p, long aOffset, long bOffset)
    {
        var (aK, bK) = OperandLayout.Of(p);
        return p.Lda % 8 == 0 && p.Ldb % 8 == 0 && p.BatchStrideA % 8 == 0 && p.BatchStrideB % 8 == 0 && aOffset % 8 == 0 && bOffset % 8 == 0
            && (!(aK || bK) || p.K % 8 == 0);
    }

    /// <summary>C = act(alpha op(A) op(B) + beta C + bias) for bf16 (<paramref name="format"/> = DType.BF16) or fp16 operands of any shape.</summary>
    public static void Launch(Accelerator accelerator, DType format, ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c,
        ArrayView<ushort> bias, GemmArgs p, int batch = 1)
    {
        if (format is not (DType.BF16 or DType.F16)) throw new ArgumentException($"{nameof(HgemmMma)}: format must be BF16 or F16, got {format}", nameof(format));
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(HgemmMma));
        if (p.M == 0 || p.N == 0) return;
        long Offset(ArrayView<ushort> v) => v.Length == 0 ? 0 : ((IContiguousArrayView)v).IndexInBytes / 2;
        var path = accelerator.AcceleratorType != AcceleratorType.Cuda ? GemmPath.Cpu : CanCopyAsync(p, Offset(a), Offset(b)) ? GemmPath.Async : GemmPath.PlainCopy;
        var (aK, bK) = OperandLayout.Of(p);
        var spec = Spec(format, aK, bK, path);
        int blocks = GemmLaunch.CeilDiv(p.M, BM) * GemmLaunch.CeilDiv(p.N, BN);
        KernelCache.For(accelerator).Launch(spec, new KernelConfig(new Index2D(blocks, batch), new Index2D(Threads, 1)), a, b, c, bias.OrDummy(accelerator),
            GemmLaunch.DeviceAddress(a), GemmLaunch.DeviceAddress(b), p);
    }

    /// <summary>The kernel for a format, operand layouts and path, named hgemm_{bf16|f16}_{NN|NT|TN|TT}[_plain|_cpu].</summary>
    public static KernelSpec Spec(DType format, bool aKInner, bool bKInner, GemmPath path)
    {
        string suffix = path switch { GemmPath.Async => "", GemmPath.PlainCopy => "_plain", _ => "_cpu" };
        string name = $"hgemm_{(format == DType.BF16 ? "bf16" : "f16")}_{(aKInner ? 'N' : 'T')}{(bKInner ? 'T' : 'N')}{suffix}";
        var pathType = path switch { GemmPath.Async => typeof(CudaAsync), GemmPath.PlainCopy => typeof(CudaPlainCopy), _ => typeof(CpuReference) };
        return GemmLaunch.Spec(name, typeof(HgemmMma), format == DType.BF16 ? typeof(BF16AsFloat) : typeof(F16AsFloat),
            GemmLaunch.Layout(aKInner), GemmLaunch.Layout(bKInner), pathType);
    }

    /// <summary>Every CUDA instantiation (2 formats x 4 layouts x 2 copy paths), for the offline PTX tests.</summary>
    public static IEnumerable<KernelSpec> Specs() =>
        from format in new[] { DType.BF16, DType.F16 }
        from aK in new[] { true, false }
        from bK in new[] { true, false }
        from path in new[] { GemmPath.Async, GemmPath.PlainCopy }
        select Spec(format, aK, bK, path);
}

/// <summary>Which code a tensor-core GEMM instantiation holds (only that: ILGPU would compile both sides of a CudaAsm.IsSupported test).</summary>
internal enum GemmPath
{
    Async,     // CUDA: cp.async copies (16-byte aligned operands), ldmatrix + mma
    PlainCopy, // CUDA: element-by-element copies (any alignment), ldmatrix + mma
    Cpu,       // any accelerator (ILGPU's CPU one in tests): plain copies, each lane sums its mma outputs
}

/// <summary>The compile-time form of <see cref="GemmPath"/>: a type parameter of the kernel.</summary>
internal interface IGemmPath
{
    /// <summary>Copies with cp.async (CUDA, 16-byte aligned chunks); false: loads and stores element by element.</summary>
    bool Async { get; }

    /// <summary>Multiplies with ldmatrix and mma.sync (CUDA); false: plain float sums from the shared tiles.</summary>
    bool TensorCores { get; }
}

internal struct CudaAsync : IGemmPath
{
    public readonly bool Async => true;
    public readonly bool TensorCores => true;
}

internal struct CudaPlainCopy : IGemmPath
{
    public readonly bool Async => false;
    public readonly bool TensorCores => true;
}

internal struct CpuReference : IGemmPath
{
    public readonly bool Async => false;
    public readonly bool TensorCores => false;
}

/// <summary>How a warp step gets its fragments: PTX's ldmatrix and mma, or their lane-exact emulation (the fragment test on the CPU).</summary>
internal interface IFragments<TF> where TF : struct, IHalfFormat
{
    /// <summary>ldmatrix.x4 (.trans) at byte <paramref name="offset"/> of the shared block.</summary>
    U32x4 LdMatrix(ArrayView<ushort> smem, uint smemBase, uint offset, bool trans);

    Float4 Mma(U32x4 a, U32x2 b, Float4 c);
}

internal readonly struct PtxFragments<TF> : IFragments<TF> where TF : struct, IHalfFormat
{
    public U32x4 LdMatrix(ArrayView<ushort> smem, uint smemBase, uint offset, bool trans) =>
        trans ? Ptx.LdMatrixX4Trans(smemBase + offset) : Ptx.LdMatrixX4(smemBase + offset);

    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => default(TF).Mma(a, b, c);
}

internal readonly struct EmulatedFragments<TF> : IFragments<TF> where TF : struct, IHalfFormat
{
    public U32x4 LdMatrix(ArrayView<ushort> smem, uint smemBase, uint offset, bool trans) => WarpMma.LdMatrixX4(smem, (int)(offset >> 1), trans);

    public Float4 Mma(U32x4 a, U32x2 b, Float4 c) => WarpMma.Emulate<TF>(a, b, c);
}
