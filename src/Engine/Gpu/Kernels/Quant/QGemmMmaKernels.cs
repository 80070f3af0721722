using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Gpu.Gemm;

namespace ManagedTensor.Gpu.Kernels.Quant;

/// <summary>
/// The dequantizing GEMM of prefill and training: y (M, N) = x (M, K) W^T with W (N, K) in a block format, on
/// tensor cores (mma.sync m16n8k16, fp32 accumulators). W is decoded tile by tile into shared memory as 16-bit
/// operands, so it stays quantized in device memory and each of its values is decoded once per block row of y.
///
/// A block has w = 2 or 4 warps (the CPU accelerator's groups hold 64 threads, a GPU's 128) in a WarpsM x WarpsN
/// grid, each warp a 64 x 32 tile of y (4 x 4 mma tiles of 16 x 8, 64 fp32 accumulators per lane): blocks of
/// 64 x 64 (2 warps), 64 x 128 or 128 x 64 (4 warps: WarpsM = 2 when M is larger than 64). Per 32-deep step of K:
/// 1. x's tile (BM rows x 32) is read 8 values at a time (one 16-byte load for f16/bf16 activations, two for
///    float32, rounded to bf16 pairs) into shared memory as [m][32 k];
/// 2. W's tile (BN rows x 32, one block of a 32-value format or one sub-block of a K-quant super-block) is
///    decoded 8 values at a time (<see cref="IBlockDecoder.Decode8"/>, Scale * raw - Min in float32, rounded to
///    the operand format once) into [n][32 k];
/// 3. each warp runs the tensor-core GEMM's step twice (16 deep each: 4 + 2 ldmatrix.x4 and 16 mma,
///    <see cref="HgemmMma.WarpStep"/>), on the same swizzled [row][32 k] tile layout as that kernel (the 16-byte
///    chunks of each 64-byte row XOR-swizzled so that ldmatrix's 8 rows fall in 8 distinct bank groups).
/// On the CPU accelerator step 3 is the lane-by-lane sum of the same outputs (<see cref="HgemmMma.WarpStepReference"/>).
///
/// Operands: f16 activations feed f16 mma; bf16 and float32 activations feed bf16 mma (float32 activations are
/// rounded to bf16, a relative error of 2^-9 per operand: the CPU's integer path rounds them to 8 bits).
/// What is left for speed: tiles are loaded synchronously (two barriers per step, latency hidden only by other
/// resident blocks); a register or cp.async prefetch of step k + 1 during step k's mma is the next step, as in
/// HgemmMma's 3-stage pipeline.
/// </summary>
internal static class QGemmMmaKernels
{
    /// <summary>Depth of a step along K, rows of the shared tiles.</summary>
    private const int BK = 32, MaxTileRows = 128;

    // ---- kernel ----

    public static void Kernel<TX, TA, TF, TW>(ArrayView<TX> x, ArrayView<ushort> w, ArrayView<TX> y, QMatMulArgs p)
        where TX : unmanaged where TA : struct, IActivation<TX> where TF : struct, IHalfFormat where TW : struct, IBlockDecoder
    {
        TW f = default;
        TA act = default;
        int tid = Group.IdxX, threads = Group.DimX;
        int warp = tid >> 5, lane = tid & 31, warps = threads >> 5;
        int warpsN = warps / p.WarpsM;
        int wm = warp / warpsN, wn = warp - wm * warpsN;
        int bm = 64 * p.WarpsM, bn = 32 * warpsN;
        int m0 = Grid.IdxY * bm, n0 = Grid.IdxX * bn;
        // The only shared allocation (__shared_alloca0): x's tile, then W's, each [128 rows][32 k] 16-bit values,
        // declared as 16-byte elements so that PTX aligns it for ldmatrix.
        var smem = SharedMemory.Allocate<Float4>(2 * MaxTileRows * BK / 8);
        var tiles = smem.Cast<ushort>();
        var chunks = smem.Cast<U32x4>();
        const int aTile = 0, bTile = MaxTileRows * BK;
        uint smemBase = CudaAsm.IsSupported ? Ptx.SharedBase() : 0u;

        int bs = f.BlockSize, words = f.BlockBytes >> 1;
        var acc = default(HgemmMma.WarpAccumulators);
        for (int k0 = 0; k0 < p.K; k0 += BK)
        {
            Group.Barrier(); // every warp is done with the previous step's tiles

            // x's tile: bm rows x 4 chunks of 8 (rows past M are zero).
            for (int c = tid; c < bm * 4; c += threads)
            {
                int row = c >> 2, ch = c & 3, m = m0 + row;
                var v = m < p.M ? act.LoadOperand8(x, m * p.K + k0 + 8 * ch) : default;
                chunks[(aTile + HgemmMma.Swizzle(row, ch, BK / 8)) >> 3] = v;
            }

            // W's tile: bn rows x 4 groups of 8, decoded (rows past N are zero).
            int block = k0 / bs, firstGroup = (k0 - block * bs) >> 3;
            for (int c = tid; c < bn * 4; c += threads)
            {
                int row = c >> 2, part = c & 3, n = n0 + row;
                U32x4 v = default;
                if (n < p.N)
                {
                    var g = f.Decode8(w, ((p.WOffset + n * p.RowBytes) >> 1) + block * words, firstGroup + part);
                    v.X = act.PackOperand(g.Scale * g.Lo.X - g.Min, g.Scale * g.Lo.Y - g.Min);
                    v.Y = act.PackOperand(g.Scale * g.Lo.Z - g.Min, g.Scale * g.Lo.W - g.Min);
                    v.Z = act.PackOperand(g.Scale * g.Hi.X - g.Min, g.Scale * g.Hi.Y - g.Min);
                    v.W = act.PackOperand(g.Scale * g.Hi.Z - g.Min, g.Scale * g.Hi.W - g.Min);
                }
                chunks[(bTile + HgemmMma.Swizzle(row, part, BK / 8)) >> 3] = v;
            }
            Group.Barrier();

            for (int kk = 0; kk < BK; kk += 16)
            {
                if (CudaAsm.IsSupported) acc = HgemmMma.WarpStep<TF, KInner, KInner>(tiles, smemBase, aTile, bTile, wm, wn, kk, lane, acc);
                else acc = HgemmMma.WarpStepReference<TF, KInner, KInner>(tiles, aTile, bTile, wm, wn, kk, lane, acc);
            }
        }

        // Lane (g, t) of the m16 x n8 tile (i, j) holds y[16 i + g][8 j + 2t, +1] and y[16 i + g + 8][8 j + 2t, +1].
        int row0 = m0 + wm * 64 + (lane >> 2), col = n0 + wn * 32 + 2 * (lane & 3);
        Store(y, act, p, row0, col, acc.C00); Store(y, act, p, row0, col + 8, acc.C01);
        Store(y, act, p, row0, col + 16, acc.C02); Store(y, act, p, row0, col + 24, acc.C03);
        Store(y, act, p, row0 + 16, col, acc.C10); Store(y, act, p, row0 + 16, col + 8, acc.C11);
        Store(y, act, p, row0 + 16, col + 16, acc.C12); Store(y, act, p, row0 + 16, col + 24, acc.C13);
        Store(y, act, p, row0 + 32, col, acc.C20); Store(y, act, p, row0 + 32, col + 8, acc.C21);
        Store(y, act, p, row0 + 32, col + 16, acc.C22); Store(y, act, p, row0 + 32, col + 24, acc.C23);
        Store(y, act, p, row0 + 48, col, acc.C30); Store(y, act, p, row0 + 48, col + 8, acc.C31);
        Store(y, act, p, row0 + 48, col + 16, acc.C32); Store(y, act, p, row0 + 48, col + 24, acc.C33);
    }

    /// <summary>One lane's part of an m16 x n8 tile: (row, col..col+1) and (row + 8, col..col+1), inside y only.</summary>
    private static void Store<TX, TA>(ArrayView<TX> y, TA act, in QMatMulArgs p, int row, int col, Float4 v)
        where TX : unmanaged where TA : struct, IActivation<TX>
    {
        if (row < p.M)
        {
            if (col < p.N) y[row * p.N + col] = act.Store(v.X);
            if (col + 1 < p.N) y[row * p.N + col + 1] = act.Store(v.Y);
        }
        if (row + 8 < p.M)
        {
            if (col < p.N) y[(row + 8) * p.N + col] = act.Store(v.Z);
            if (col + 1 < p.N) y[(row + 8) * p.N + col + 1] = act.Store(v.W);
        }
    }

    // ---- launcher ----

    /// <summary>y = x W^T for contiguous x (M, K) and y (M, N), x aligned (see QuantKernels), W whole blocks.</summary>
    public static void Run(GpuBackend b, DType format, DType activation, object x, ArrayView<byte> w, object y, QMatMulArgs p)
    {
        // 4 warps on a GPU, 2 on the CPU accelerator (64-thread groups); two warps along M when M fills them.
        int warps = Math.Min(4, b.GroupSize / 32);
        p.WarpsM = warps == 4 && p.M > 64 ? 2 : 1;
        int bm = 64 * p.WarpsM, bn = 32 * (warps / p.WarpsM);
        var grid = new Index2D((p.N + bn - 1) / bn, (p.M + bm - 1) / bm);
        b.Launch(Spec(format, activation), new KernelConfig(grid, new Index2D(warps * 32, 1)), x, w.Cast<ushort>(), y, p);
    }

    /// <summary>QGemmMma_{format}_{activation}.</summary>
    public static KernelSpec Spec(DType format, DType activation) => new($"QGemmMma_{format}_{activation}", format switch
    {
        DType.Q8_0 => For<Q8_0Blocks>(activation),
        DType.Q4_0 => For<Q4_0Blocks>(activation),
        DType.Q4_K => For<Q4_KBlocks>(activation),
        _ => throw new NotSupportedException($"no device GEMM for {format}"),
    });

    private static MethodInfo For<TW>(DType activation) where TW : struct, IBlockDecoder => activation switch
    {
        DType.F32 => Method<float, F32Activation, Bf16, TW>(),
        DType.F16 => Method<ushort, F16Activation, F16, TW>(),
        DType.BF16 => Method<ushort, BF16Activation, Bf16, TW>(),
        _ => throw new NotSupportedException($"QMatMul activations must be F32, F16 or BF16, got {activation}"),
    };

    private static MethodInfo Method<TX, TA, TF, TW>()
        where TX : unmanaged where TA : struct, IActivation<TX> where TF : struct, IHalfFormat where TW : struct, IBlockDecoder =>
        ((Action<ArrayView<TX>, ArrayView<ushort>, ArrayView<TX>, QMatMulArgs>)Kernel<TX, TA, TF, TW>).Method;
}
