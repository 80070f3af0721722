using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// bf16 / fp16 GEMM on tensor cores with fp32 accumulation: mma.sync.m16n8k16 fed by ldmatrix from a
/// 3-stage cp.async pipeline. C has the inputs' format; the epilogue (alpha, beta, bias, activation)
/// runs in fp32 and rounds once.
///
/// Block 128 x 128 x 32, 256 threads = 8 warps in a 2 (M) x 4 (N) grid, each warp a 64 x 32 tile of C:
/// 4 x 4 mma tiles of 16 x 8, 64 fp32 accumulators per lane. Per 16-deep step a warp loads its A
/// fragments with four ldmatrix.x4 and its B fragments with two, then issues 16 mma.
///
/// Shared memory: per stage one tile of each operand (8 KB each, 48 KB for 3 stages, the static limit),
/// stored as rows of its contiguous axis: a k-contiguous operand as [mn][32 k], an mn-contiguous one as
/// [k][128 mn]. ldmatrix reads 8 rows x 16 bytes at a time; rows 64 or 256 bytes apart would hit the same
/// banks, so the 16-byte chunks of each row are XOR-swizzled (<see cref="Swizzle"/>): the 8 rows of one
/// ldmatrix land in 8 different bank groups with no padding. The k-contiguous tile is read with plain
/// ldmatrix, the mn-contiguous one with ldmatrix.trans, which is how NN, NT, TN and TT share one kernel.
///
/// Pipeline: tiles t + 1 and t + 2 are in flight (cp.async.cg, 16 bytes, zero-filled past the matrix edge)
/// while tile t is multiplied; one barrier per tile. cp.async needs 16-byte aligned chunks (leading
/// dimensions, batch strides and offsets multiples of 8 elements); otherwise the same kernel copies with
/// plain loads and stores (slower, same results), which is also the path of the CPU accelerator, where
/// each lane sums its mma outputs from the shared tiles (<see cref="WarpStepReference"/>); the fragment path
/// itself is tested on one warp with ldmatrix and mma emulated lane by lane (<see cref="WarpMma"/>).
/// </summary>
internal static class HgemmMma
{
    public const int BM = 128, BN = 128, BK = 32, Stages = 3, Threads = 256;
    internal const int TileElems = BM * BK;          // one operand's tile (BM == BN): 4096 halves
    internal const int StageElems = 2 * TileElems;   // A then B

    internal static void Kernel<TF, TA, TB>(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, ArrayView<ushort> bias,
        ulong aAddress, ulong bAddress, GemmArgs p, int asyncCopy)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int tid = Group.IdxX;
        int n0 = Grid.IdxX * BN, m0 = Grid.IdxY * BM, batch = Grid.IdxZ;
        // The only shared allocation (__shared_alloca0 in PTX), declared as 16-byte elements so that PTX aligns it
        // to 16 bytes, as cp.async and ldmatrix need (a ushort array would get .align 2).
        var smem = SharedMemory.Allocate<Float4>(Stages * StageElems / 8).Cast<ushort>();
        var ab = a.SubView(batch * p.BatchStrideA);
        var bb = b.SubView(batch * p.BatchStrideB);
        var cb = c.SubView(batch * p.BatchStrideC);
        var src = new Sources
        {
            A = ab,
            B = bb,
            AAddress = aAddress + (ulong)(batch * p.BatchStrideA * 2),
            BAddress = bAddress + (ulong)(batch * p.BatchStrideB * 2),
            SmemBase = CudaAsm.IsSupported ? Ptx.SharedBase() : 0u,
            Async = CudaAsm.IsSupported && asyncCopy != 0,
        };

        int warp = tid / 32, lane = tid % 32;
        int wm = warp / 4, wn = warp % 4;
        int tiles = (p.K + BK - 1) / BK;

        // Prologue: tiles 0 .. Stages - 2 in flight, one commit group each (empty groups keep the count uniform).
        for (int s = 0; s < Stages - 1; s++)
        {
            if (s < tiles) LoadStage<TA, TB>(smem, src, s, s * BK, tid, m0, n0, p);
            Commit();
        }

        var acc = default(WarpAccumulators);
        for (int t = 0; t < tiles; t++)
        {
            WaitForAllButNewest(); // tile t has landed (this thread's copies) ...
            Group.Barrier();       // ... and everyone's; everyone is also done with tile t - 1's stage
            int next = t + Stages - 1;
            if (next < tiles) LoadStage<TA, TB>(smem, src, next % Stages, next * BK, tid, m0, n0, p);
            Commit();

            int aTile = (t % Stages) * StageElems, bTile = aTile + TileElems;
            for (int kk = 0; kk < BK; kk += 16)
            {
                if (CudaAsm.IsSupported) acc = WarpStep<TF, TA, TB>(smem, src.SmemBase, aTile, bTile, wm, wn, kk, lane, acc);
                else acc = WarpStepReference<TF, TA, TB>(smem, aTile, bTile, wm, wn, kk, lane, acc);
            }
        }
        WaitForAll();

        // Lane (g, t) of the m16 x n8 tile (i, j) holds C[16 i + g][8 j + 2t, +1] and C[16 i + g + 8][8 j + 2t, +1].
        int row = m0 + wm * 64 + lane / 4, col = n0 + wn * 32 + 2 * (lane % 4);
        Store<TF>(cb, bias, p, row, col, acc.C00); Store<TF>(cb, bias, p, row, col + 8, acc.C01);
        Store<TF>(cb, bias, p, row, col + 16, acc.C02); Store<TF>(cb, bias, p, row, col + 24, acc.C03);
        Store<TF>(cb, bias, p, row + 16, col, acc.C10); Store<TF>(cb, bias, p, row + 16, col + 8, acc.C11);
        Store<TF>(cb, bias, p, row + 16, col + 16, acc.C12); Store<TF>(cb, bias, p, row + 16, col + 24, acc.C13);
        Store<TF>(cb, bias, p, row + 32, col, acc.C20); Store<TF>(cb, bias, p, row + 32, col + 8, acc.C21);
        Store<TF>(cb, bias, p, row + 32, col + 16, acc.C22); Store<TF>(cb, bias, p, row + 32, col + 24, acc.C23);
        Store<TF>(cb, bias, p, row + 48, col, acc.C30); Store<TF>(cb, bias, p, row + 48, col + 8, acc.C31);
        Store<TF>(cb, bias, p, row + 48, col + 16, acc.C32); Store<TF>(cb, bias, p, row + 48, col + 24, acc.C33);
    }

    /// <summary>A warp's 64 x 32 tile of C as 4 x 4 mma tiles of 16 x 8 (Cij: m16 tile i, n8 tile j), 64 floats per lane.</summary>
    internal struct WarpAccumulators
    {
        public Float4 C00, C01, C02, C03, C10, C11, C12, C13, C20, C21, C22, C23, C30, C31, C32, C33;
    }

    /// <summary>One 16-deep step of a warp on tensor cores: 4 + 2 ldmatrix.x4, 16 mma.</summary>
    internal static WarpAccumulators WarpStep<TF, TA, TB>(ArrayView<ushort> smem, uint smemBase, int aTile, int bTile,
        int wm, int wn, int kk, int lane, WarpAccumulators acc)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        var f = default(TF);
        var a0 = LoadA<TA>(smem, smemBase, aTile, wm * 64 + 0, kk, lane);
        var a1 = LoadA<TA>(smem, smemBase, aTile, wm * 64 + 16, kk, lane);
        var a2 = LoadA<TA>(smem, smemBase, aTile, wm * 64 + 32, kk, lane);
        var a3 = LoadA<TA>(smem, smemBase, aTile, wm * 64 + 48, kk, lane);
        var bp0 = LoadB<TB>(smem, smemBase, bTile, wn * 32 + 0, kk, lane);  // n8 tiles 0 and 1
        var bp1 = LoadB<TB>(smem, smemBase, bTile, wn * 32 + 16, kk, lane); // n8 tiles 2 and 3
        U32x2 b0 = new() { X = bp0.X, Y = bp0.Y }, b1 = new() { X = bp0.Z, Y = bp0.W };
        U32x2 b2 = new() { X = bp1.X, Y = bp1.Y }, b3 = new() { X = bp1.Z, Y = bp1.W };
        acc.C00 = f.Mma(a0, b0, acc.C00); acc.C01 = f.Mma(a0, b1, acc.C01); acc.C02 = f.Mma(a0, b2, acc.C02); acc.C03 = f.Mma(a0, b3, acc.C03);
        acc.C10 = f.Mma(a1, b0, acc.C10); acc.C11 = f.Mma(a1, b1, acc.C11); acc.C12 = f.Mma(a1, b2, acc.C12); acc.C13 = f.Mma(a1, b3, acc.C13);
        acc.C20 = f.Mma(a2, b0, acc.C20); acc.C21 = f.Mma(a2, b1, acc.C21); acc.C22 = f.Mma(a2, b2, acc.C22); acc.C23 = f.Mma(a2, b3, acc.C23);
        acc.C30 = f.Mma(a3, b0, acc.C30); acc.C31 = f.Mma(a3, b1, acc.C31); acc.C32 = f.Mma(a3, b2, acc.C32); acc.C33 = f.Mma(a3, b3, acc.C33);
        return acc;
    }

    /// <summary>
    /// The same step without fragments, for the CPU accelerator: each lane sums, straight from the swizzled
    /// shared tiles, the 64 outputs the mma layout gives it. (Run with the lane-exact emulation, WarpStep costs
    /// ~550 shuffles per step, each a barrier of OS threads on the CPU accelerator: minutes per test. Its
    /// fragments are tested on one warp by a dedicated test kernel instead.)
    /// </summary>
    internal static WarpAccumulators WarpStepReference<TF, TA, TB>(ArrayView<ushort> smem, int aTile, int bTile,
        int wm, int wn, int kk, int lane, WarpAccumulators acc)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int m = wm * 64 + lane / 4, n = wn * 32 + 2 * (lane % 4);
        acc.C00 = Add(acc.C00, Reference<TF, TA, TB>(smem, aTile, bTile, m, n, kk));
        acc.C01 = Add(acc.C01, Reference<TF, TA, TB>(smem, aTile, bTile, m, n + 8, kk));
        acc.C02 = Add(acc.C02, Reference<TF, TA, TB>(smem, aTile, bTile, m, n + 16, kk));
        acc.C03 = Add(acc.C03, Reference<TF, TA, TB>(smem, aTile, bTile, m, n + 24, kk));
        acc.C10 = Add(acc.C10, Reference<TF, TA, TB>(smem, aTile, bTile, m + 16, n, kk));
        acc.C11 = Add(acc.C11, Reference<TF, TA, TB>(smem, aTile, bTile, m + 16, n + 8, kk));
        acc.C12 = Add(acc.C12, Reference<TF, TA, TB>(smem, aTile, bTile, m + 16, n + 16, kk));
        acc.C13 = Add(acc.C13, Reference<TF, TA, TB>(smem, aTile, bTile, m + 16, n + 24, kk));
        acc.C20 = Add(acc.C20, Reference<TF, TA, TB>(smem, aTile, bTile, m + 32, n, kk));
        acc.C21 = Add(acc.C21, Reference<TF, TA, TB>(smem, aTile, bTile, m + 32, n + 8, kk));
        acc.C22 = Add(acc.C22, Reference<TF, TA, TB>(smem, aTile, bTile, m + 32, n + 16, kk));
        acc.C23 = Add(acc.C23, Reference<TF, TA, TB>(smem, aTile, bTile, m + 32, n + 24, kk));
        acc.C30 = Add(acc.C30, Reference<TF, TA, TB>(smem, aTile, bTile, m + 48, n, kk));
        acc.C31 = Add(acc.C31, Reference<TF, TA, TB>(smem, aTile, bTile, m + 48, n + 8, kk));
        acc.C32 = Add(acc.C32, Reference<TF, TA, TB>(smem, aTile, bTile, m + 48, n + 16, kk));
        acc.C33 = Add(acc.C33, Reference<TF, TA, TB>(smem, aTile, bTile, m + 48, n + 24, kk));
        return acc;
    }

    private static Float4 Add(Float4 x, Float4 y) => new(x.X + y.X, x.Y + y.Y, x.Z + y.Z, x.W + y.W);

    /// <summary>Sum over 16 k of the lane's four mma outputs: (m, n), (m, n + 1), (m + 8, n), (m + 8, n + 1).</summary>
    private static Float4 Reference<TF, TA, TB>(ArrayView<ushort> smem, int aTile, int bTile, int m, int n, int kk)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        var f = default(TF);
        Float4 r = default;
        for (int k = kk; k < kk + 16; k++)
        {
            float a0 = f.Load(smem[aTile + Element<TA>(m, k)]), a1 = f.Load(smem[aTile + Element<TA>(m + 8, k)]);
            float b0 = f.Load(smem[bTile + Element<TB>(n, k)]), b1 = f.Load(smem[bTile + Element<TB>(n + 1, k)]);
            r = new Float4(r.X + a0 * b0, r.Y + a0 * b1, r.Z + a1 * b0, r.W + a1 * b1);
        }
        return r;
    }

    /// <summary>Offset of op(X)'s element (mn, k) in a stage's tile.</summary>
    internal static int Element<TLayout>(int mn, int k) where TLayout : struct, IOperandLayout =>
        default(TLayout).IsKInner ? Swizzle(mn, k / 8, BK / 8) + k % 8 : Swizzle(k, mn / 8, BM / 8) + mn % 8;

    /// <summary>Where a block's operands come from (this batch's views and their device addresses).</summary>
    private struct Sources
    {
        public ArrayView<ushort> A, B;
        public ulong AAddress, BAddress;
        public uint SmemBase;
        public bool Async;
    }

    /// <summary>
    /// Element offset of 16-byte chunk <paramref name="chunk"/> of row <paramref name="row"/> in a tile whose rows hold
    /// <paramref name="chunksPerRow"/> chunks (4: 64-byte rows of 32 k; 16: 256-byte rows of 128 mn). The chunk index is
    /// XORed with bits of the row so that 8 consecutive rows put a given chunk in 8 different 16-byte bank groups of a
    /// 128-byte line: rows of 64 bytes pair up in a line, hence (row / 2) % 4 for 4 chunks, row % 8 for 16.
    /// </summary>
    public static int Swizzle(int row, int chunk, int chunksPerRow)
    {
        int x = chunksPerRow == 4 ? (row >> 1) & 3 : row & 7;
        return (row * chunksPerRow + (chunk ^ x)) * 8;
    }

    /// <summary>The tile geometry of a layout: chunks per stored row (the contiguous axis holds BK or 128 elements).</summary>
    private static int ChunksPerRow<TLayout>() where TLayout : struct, IOperandLayout => default(TLayout).IsKInner ? BK / 8 : BM / 8;

    /// <summary>Copies tile (mn0.., k0..) of both operands into stage <paramref name="stage"/>: 512 chunks each, two per thread.</summary>
    private static void LoadStage<TA, TB>(ArrayView<ushort> smem, in Sources src, int stage, int k0, int tid, int m0, int n0, in GemmArgs p)
        where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int aTile = stage * StageElems, bTile = aTile + TileElems;
        CopyChunk<TA>(smem, src.A, src.AAddress, src.SmemBase, src.Async, aTile, tid, m0, k0, p.M, p.K, p.Lda);
        CopyChunk<TA>(smem, src.A, src.AAddress, src.SmemBase, src.Async, aTile, tid + Threads, m0, k0, p.M, p.K, p.Lda);
        CopyChunk<TB>(smem, src.B, src.BAddress, src.SmemBase, src.Async, bTile, tid, n0, k0, p.N, p.K, p.Ldb);
        CopyChunk<TB>(smem, src.B, src.BAddress, src.SmemBase, src.Async, bTile, tid + Threads, n0, k0, p.N, p.K, p.Ldb);
    }

    /// <summary>Chunk l (8 elements along the stored operand's contiguous axis) of the tile at (mn0, k0), zero past the edge.</summary>
    internal static void CopyChunk<TLayout>(ArrayView<ushort> smem, ArrayView<ushort> x, ulong xAddress, uint smemBase, bool async,
        int tileBase, int l, int mn0, int k0, int mnSize, int kSize, int ld) where TLayout : struct, IOperandLayout
    {
        int chunks = ChunksPerRow<TLayout>();
        int row = l / chunks, chunk = l % chunks;
        bool kInner = default(TLayout).IsKInner;
        int gmn = kInner ? mn0 + row : mn0 + chunk * 8;
        int gk = kInner ? k0 + chunk * 8 : k0 + row;
        int valid = kInner ? (gmn < mnSize ? kSize - gk : 0) : (gk < kSize ? mnSize - gmn : 0);
        valid = valid < 0 ? 0 : valid > 8 ? 8 : valid;
        int gi = valid > 0 ? OperandLayout.Index<TLayout>(gmn, gk, ld) : 0;
        int si = tileBase + Swizzle(row, chunk, chunks);
        if (async)
        {
            // cp.async.cg: 16 bytes to shared, bypassing L1; src-size < 16 zero-fills the rest (0: nothing is read).
            uint dst = smemBase + (uint)(si * 2);
            ulong from = xAddress + (ulong)gi * 2;
            CudaAsm.Emit("cp.async.cg.shared.global [%0], [%1], 16, %2;", dst, from, (uint)(valid * 2));
        }
        else
        {
            for (int e = 0; e < 8; e++) smem[si + e] = e < valid ? x[gi + e] : (ushort)0;
        }
    }

    private static void Commit()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.commit_group;");
    }

    /// <summary>Waits until at most Stages - 2 = 1 commit group of this thread is pending.</summary>
    private static void WaitForAllButNewest()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_group 1;");
    }

    private static void WaitForAll()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_all;");
    }

    /// <summary>
    /// The A fragment of the 16 x 16 block at rows m.. and k.. of op(A) in a stage. Matrix j of the x4 is
    /// (rows (j % 2) * 8.., k (j / 2) * 8..), i.e. a0..a3; lane l points at row l % 8 of matrix l / 8.
    /// k-contiguous tile ([m][k]): that row is an m row, plain ldmatrix. mn-contiguous ([k][m]): a k row, .trans.
    /// </summary>
    internal static U32x4 LoadA<TLayout>(ArrayView<ushort> smem, uint smemBase, int tileBase, int m, int k, int lane)
        where TLayout : struct, IOperandLayout
    {
        int j = lane / 8, r = lane % 8;
        bool kInner = default(TLayout).IsKInner;
        int row = kInner ? m + (j % 2) * 8 + r : k + (j / 2) * 8 + r;
        int col = kInner ? k + (j / 2) * 8 : m + (j % 2) * 8;
        return LdMatrix(smem, smemBase, tileBase, row, col, ChunksPerRow<TLayout>(), trans: !kInner);
    }

    /// <summary>
    /// The B fragments of two n8 tiles (columns n.. and n + 8.., k..k+15): matrix j is (n (j / 2) * 8.., k (j % 2) * 8..),
    /// so the result is b0, b1 of the first n8 tile, then b0, b1 of the second. mma wants B "col" (k runs within a
    /// register): a k-contiguous tile ([n][k]) gives that with plain ldmatrix, an mn-contiguous one ([k][n]) with .trans.
    /// </summary>
    internal static U32x4 LoadB<TLayout>(ArrayView<ushort> smem, uint smemBase, int tileBase, int n, int k, int lane)
        where TLayout : struct, IOperandLayout
    {
        int j = lane / 8, r = lane % 8;
        bool kInner = default(TLayout).IsKInner;
        int row = kInner ? n + (j / 2) * 8 + r : k + (j % 2) * 8 + r;
        int col = kInner ? k + (j % 2) * 8 : n + (j / 2) * 8;
        return LdMatrix(smem, smemBase, tileBase, row, col, ChunksPerRow<TLayout>(), trans: !kInner);
    }

    private static U32x4 LdMatrix(ArrayView<ushort> smem, uint smemBase, int tileBase, int row, int col, int chunksPerRow, bool trans)
    {
        int index = tileBase + Swizzle(row, col / 8, chunksPerRow); // col is a multiple of 8: the row start of an 8 x 8 matrix
        if (CudaAsm.IsSupported)
        {
            uint address = smemBase + (uint)(index * 2);
            return trans ? Ptx.LdMatrixX4Trans(address) : Ptx.LdMatrixX4(address);
        }
        return WarpMma.LdMatrixX4(smem, index, trans);
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

    /// <summary>Whether cp.async's 16-byte chunks are aligned: leading dimensions, batch strides and view offsets multiples of 8 elements.</summary>
    public static bool CanCopyAsync(in GemmArgs p, long aOffset, long bOffset) =>
        p.Lda % 8 == 0 && p.Ldb % 8 == 0 && p.BatchStrideA % 8 == 0 && p.BatchStrideB % 8 == 0 && aOffset % 8 == 0 && bOffset % 8 == 0;

    /// <summary>C = act(alpha op(A) op(B) + beta C + bias) for bf16 (<paramref name="format"/> = DType.BF16) or fp16 operands of any shape.</summary>
    public static void Launch(Accelerator accelerator, DType format, ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c,
        ArrayView<ushort> bias, GemmArgs p, int batch = 1)
    {
        if (format is not (DType.BF16 or DType.F16)) throw new ArgumentException($"{nameof(HgemmMma)}: format must be BF16 or F16, got {format}", nameof(format));
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(HgemmMma));
        if (p.M == 0 || p.N == 0) return;
        long Offset(ArrayView<ushort> v) => v.Length == 0 ? 0 : ((IContiguousArrayView)v).IndexInBytes / 2;
        int async = CanCopyAsync(p, Offset(a), Offset(b)) ? 1 : 0;
        var (aK, bK) = OperandLayout.Of(p);
        string name = $"hgemm_{(format == DType.BF16 ? "bf16" : "f16")}_{(aK ? 'N' : 'T')}{(bK ? 'T' : 'N')}";
        var kernel = GemmKernelCache.Get(accelerator, name, acc => format == DType.BF16 ? Load<BF16AsFloat>(acc, aK, bK) : Load<F16AsFloat>(acc, aK, bK));
        var grid = new Index3D(GemmLaunch.CeilDiv(p.N, BN), GemmLaunch.CeilDiv(p.M, BM), batch);
        kernel(new KernelConfig(grid, new Index3D(Threads, 1, 1)), a, b, c, bias.OrDummy(accelerator),
            GemmLaunch.DeviceAddress(a), GemmLaunch.DeviceAddress(b), p, async);
    }

    private static Action<KernelConfig, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ulong, ulong, GemmArgs, int>
        Load<TF>(Accelerator acc, bool aK, bool bK) where TF : struct, IHalfFormat => (aK, bK) switch
        {
            (true, false) => acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ulong, ulong, GemmArgs, int>(Kernel<TF, KInner, MnInner>),
            (true, true) => acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ulong, ulong, GemmArgs, int>(Kernel<TF, KInner, KInner>),
            (false, false) => acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ulong, ulong, GemmArgs, int>(Kernel<TF, MnInner, MnInner>),
            (false, true) => acc.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, ulong, ulong, GemmArgs, int>(Kernel<TF, MnInner, KInner>),
        };
}
