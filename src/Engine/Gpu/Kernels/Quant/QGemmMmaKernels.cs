using System.Reflection;
using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu.Gemm;

namespace ManagedTensor.Gpu.Kernels.Quant;

/// <summary>How the GEMM's warps multiply their tiles: a type parameter, so each compiled kernel holds one path
/// (ILGPU compiles both sides of a run-time CudaAsm.IsSupported test into the PTX).</summary>
internal interface IMmaPath
{
    /// <summary>ldmatrix and mma.sync (CUDA only).</summary>
    bool TensorCores { get; }

    /// <summary>The same fragments emulated lane by lane with shuffles (CPU accelerator: tests the fragment code).</summary>
    bool EmulatedFragments { get; }
}

internal readonly struct TensorCorePath : IMmaPath
{
    public bool TensorCores => true;
    public bool EmulatedFragments => false;
}

internal readonly struct EmulatedFragmentPath : IMmaPath
{
    public bool TensorCores => false;
    public bool EmulatedFragments => true;
}

/// <summary>Each lane sums its outputs straight from the shared tiles (CPU accelerator: fast, no fragments).</summary>
internal readonly struct ReferencePath : IMmaPath
{
    public bool TensorCores => false;
    public bool EmulatedFragments => false;
}

/// <summary>
/// The dequantizing GEMM of prefill and training: y (M, N) = x (M, K) W^T with W (N, K) in a block format, on
/// tensor cores (mma.sync m16n8k16, fp32 accumulators). W is decoded tile by tile into shared memory as 16-bit
/// operands, so it stays quantized in device memory and each of its values is decoded once per block row of y.
///
/// A block has w = 2 or 4 warps (the CPU accelerator's groups hold 64 threads, a GPU's 128) in a WarpsM x WarpsN
/// grid, each warp a 64 x 32 tile of y: 4 x 4 mma tiles of 16 x 8, 64 fp32 accumulators per lane. Blocks are
/// 64 x 64 (2 warps), 64 x 128 or 128 x 64 (4 warps: WarpsM = 2 when M is larger than 64). Per 32-deep step of K:
/// 1. x's tile (BM rows x 32) is read 8 values at a time (one 16-byte load for f16/bf16 activations, two for
///    float32, rounded to bf16 pairs) into shared memory as [m][32 k];
/// 2. W's tile (BN rows x 32: one block of a 32-value format, half of NF4's, one sub-block of a K-quant's) is
///    decoded 8 values at a time (<see cref="IBlockDecoder.Decode8"/>, Scale * raw - Min in float32, rounded to
///    the operand format once) into [n][32 k];
/// 3. each warp takes two 16-deep steps: per step four ldmatrix.x4 give its four A fragments (m16 x k16), two
///    give its B fragments (two n8 x k16 each), then 16 mma.
/// The tiles are 64-byte rows of 4 16-byte chunks, XOR-swizzled (<see cref="Swizzle"/>) so that the 8 rows one
/// ldmatrix reads fall in 8 distinct 16-byte bank groups: the layout of HgemmMma's k-contiguous tiles.
///
/// Operands: f16 activations feed f16 mma; bf16 and float32 activations feed bf16 mma (float32 activations are
/// rounded to bf16, a relative error of 2^-9 per operand: the CPU's integer path rounds them to 8 bits).
/// What is left for speed: tiles are loaded synchronously (two barriers per step, latency hidden only by other
/// resident blocks); a register or cp.async prefetch of step k + 1 during step k's mma is the next step, as in
/// HgemmMma's pipeline, and 64 x 64 warp tiles would halve the ldmatrix per mma.
/// </summary>
internal static class QGemmMmaKernels
{
    /// <summary>Depth of a step along K, rows of the shared tiles.</summary>
    private const int BK = 32, MaxTileRows = 128;

    // ---- kernel ----

    public static void Kernel<TX, TA, TW, TP>(ArrayView<TX> x, ArrayView<ushort> w, ArrayView<TX> y, QMatMulArgs p)
        where TX : unmanaged where TA : struct, IActivation<TX> where TW : struct, IBlockDecoder where TP : struct, IMmaPath
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
        uint smemBase = default(TP).TensorCores ? Ptx.SharedBase() : 0u;

        int bs = f.BlockSize, words = f.BlockBytes >> 1;
        var acc = default(WarpTile);
        for (int k0 = 0; k0 < p.K; k0 += BK)
        {
            Group.Barrier(); // every warp is done with the previous step's tiles

            // x's tile: bm rows x 4 chunks of 8 (rows past M are zero).
            for (int c = tid; c < bm * 4; c += threads)
            {
                int row = c >> 2, ch = c & 3, m = m0 + row;
                var v = m < p.M ? act.LoadOperand8(x, m * p.K + k0 + 8 * ch) : default;
                chunks[(aTile + Swizzle(row, ch)) >> 3] = v;
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
                chunks[(bTile + Swizzle(row, part)) >> 3] = v;
            }
            Group.Barrier();

            for (int kk = 0; kk < BK; kk += 16)
            {
                if (default(TP).TensorCores || default(TP).EmulatedFragments) acc = WarpStep<TX, TA, TP>(tiles, smemBase, bTile, wm, wn, kk, lane, acc);
                else acc = WarpStepReference<TX, TA>(tiles, aTile, bTile, wm, wn, kk, lane, acc);
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

    /// <summary>A warp's 64 x 32 tile of y as 4 x 4 mma tiles of 16 x 8 (Cij: m16 tile i, n8 tile j), 64 floats per lane.</summary>
    internal struct WarpTile
    {
        public Float4 C00, C01, C02, C03, C10, C11, C12, C13, C20, C21, C22, C23, C30, C31, C32, C33;
    }

    /// <summary>
    /// Element offset of 16-byte chunk <paramref name="chunk"/> (0..3) of row <paramref name="row"/> in a [row][32] tile: the
    /// chunk index is XORed with bits 1-2 of the row, so that 8 consecutive 64-byte rows (two per 128-byte line) put a
    /// given chunk in 8 distinct 16-byte bank groups.
    /// </summary>
    internal static int Swizzle(int row, int chunk) => (row * 4 + (chunk ^ ((row >> 1) & 3))) * 8;

    /// <summary>
    /// One 16-deep step of a warp with fragments (tensor cores, or their lane-by-lane emulation): four ldmatrix.x4 give
    /// A's m16 x k16 fragments of rows wm 64 + 16 i (x's tile is at offset 0), two give B's for columns wn 32 + 16 h (two
    /// n8 tiles each), 16 mma.
    /// </summary>
    private static WarpTile WarpStep<TX, TA, TP>(ArrayView<ushort> tiles, uint smemBase, int bTile, int wm, int wn, int kk, int lane, WarpTile acc)
        where TX : unmanaged where TA : struct, IActivation<TX> where TP : struct, IMmaPath
    {
        var a0 = LoadA<TP>(tiles, smemBase, wm * 64, kk, lane);
        var a1 = LoadA<TP>(tiles, smemBase, wm * 64 + 16, kk, lane);
        var a2 = LoadA<TP>(tiles, smemBase, wm * 64 + 32, kk, lane);
        var a3 = LoadA<TP>(tiles, smemBase, wm * 64 + 48, kk, lane);
        var bp0 = LoadB<TP>(tiles, smemBase, bTile, wn * 32, kk, lane);
        var bp1 = LoadB<TP>(tiles, smemBase, bTile, wn * 32 + 16, kk, lane);
        U32x2 b0 = new() { X = bp0.X, Y = bp0.Y }, b1 = new() { X = bp0.Z, Y = bp0.W };
        U32x2 b2 = new() { X = bp1.X, Y = bp1.Y }, b3 = new() { X = bp1.Z, Y = bp1.W };
        acc.C00 = Mma<TX, TA, TP>(a0, b0, acc.C00); acc.C01 = Mma<TX, TA, TP>(a0, b1, acc.C01); acc.C02 = Mma<TX, TA, TP>(a0, b2, acc.C02); acc.C03 = Mma<TX, TA, TP>(a0, b3, acc.C03);
        acc.C10 = Mma<TX, TA, TP>(a1, b0, acc.C10); acc.C11 = Mma<TX, TA, TP>(a1, b1, acc.C11); acc.C12 = Mma<TX, TA, TP>(a1, b2, acc.C12); acc.C13 = Mma<TX, TA, TP>(a1, b3, acc.C13);
        acc.C20 = Mma<TX, TA, TP>(a2, b0, acc.C20); acc.C21 = Mma<TX, TA, TP>(a2, b1, acc.C21); acc.C22 = Mma<TX, TA, TP>(a2, b2, acc.C22); acc.C23 = Mma<TX, TA, TP>(a2, b3, acc.C23);
        acc.C30 = Mma<TX, TA, TP>(a3, b0, acc.C30); acc.C31 = Mma<TX, TA, TP>(a3, b1, acc.C31); acc.C32 = Mma<TX, TA, TP>(a3, b2, acc.C32); acc.C33 = Mma<TX, TA, TP>(a3, b3, acc.C33);
        return acc;
    }

    /// <summary>
    /// The A fragment of the 16 x 16 block at rows m.. and k.. of x's tile: matrix j of the x4 is (rows m + (j % 2) 8..,
    /// k + (j / 2) 8..), i.e. a0..a3 of mma's layout; lane l gives the address of row l % 8 of matrix l / 8.
    /// </summary>
    private static U32x4 LoadA<TP>(ArrayView<ushort> tiles, uint smemBase, int m, int k, int lane) where TP : struct, IMmaPath
    {
        int j = lane >> 3, r = lane & 7;
        return LdMatrix<TP>(tiles, smemBase, Swizzle(m + (j & 1) * 8 + r, (k >> 3) + (j >> 1)));
    }

    /// <summary>
    /// B fragments of two n8 tiles (rows n.. and n + 8.. of W's tile, k..k+15): matrix j is (rows n + (j / 2) 8.., k + (j % 2) 8..),
    /// so the result is b0, b1 of the first n8 tile, then of the second. A [n][k] tile is what mma's "col" B wants.
    /// </summary>
    private static U32x4 LoadB<TP>(ArrayView<ushort> tiles, uint smemBase, int bTile, int n, int k, int lane) where TP : struct, IMmaPath
    {
        int j = lane >> 3, r = lane & 7;
        return LdMatrix<TP>(tiles, smemBase, bTile + Swizzle(n + (j >> 1) * 8 + r, (k >> 3) + (j & 1)));
    }

    private static U32x4 LdMatrix<TP>(ArrayView<ushort> tiles, uint smemBase, int index) where TP : struct, IMmaPath =>
        default(TP).TensorCores ? Ptx.LdMatrixX4(smemBase + (uint)(index * 2)) : WarpMma.LdMatrixX4(tiles, index, trans: false);

    private static Float4 Mma<TX, TA, TP>(U32x4 a, U32x2 b, Float4 c) where TX : unmanaged where TA : struct, IActivation<TX> where TP : struct, IMmaPath =>
        default(TP).TensorCores ? default(TA).Mma(a, b, c) : EmulateMma<TX, TA>(a, b, c);

    /// <summary>
    /// mma.m16n8k16.row.col for the CPU accelerator, lane (g, t) = (lane / 4, lane % 4) computing its four outputs from the
    /// other lanes' registers (PTX ISA, "Matrix Fragments for mma.m16n8k16"): A[g][2q..2q+1] is a0 of lane 4g + q
    /// (a2: k + 8; a1, a3: row g + 8), B[2q..2q+1][n] is b0 of lane 4n + q (b1: k + 8); C[g][2t, 2t+1] are c0, c1 and
    /// C[g + 8][2t, 2t+1] c2, c3.
    /// </summary>
    private static Float4 EmulateMma<TX, TA>(U32x4 a, U32x2 b, Float4 c) where TX : unmanaged where TA : struct, IActivation<TX>
    {
        int lane = Warp.LaneIdx, g = lane >> 2, t = lane & 3;
        for (int q = 0; q < 4; q++)
        {
            var aq = Warp.Shuffle(a, 4 * g + q);
            var bn0 = Warp.Shuffle(b, 4 * (2 * t) + q);
            var bn1 = Warp.Shuffle(b, 4 * (2 * t + 1) + q);
            c.X += Dot2<TX, TA>(aq.X, bn0.X) + Dot2<TX, TA>(aq.Z, bn0.Y);
            c.Y += Dot2<TX, TA>(aq.X, bn1.X) + Dot2<TX, TA>(aq.Z, bn1.Y);
            c.Z += Dot2<TX, TA>(aq.Y, bn0.X) + Dot2<TX, TA>(aq.W, bn0.Y);
            c.W += Dot2<TX, TA>(aq.Y, bn1.X) + Dot2<TX, TA>(aq.W, bn1.Y);
        }
        return c;
    }

    private static float Dot2<TX, TA>(uint u, uint v) where TX : unmanaged where TA : struct, IActivation<TX>
    {
        var act = default(TA);
        return act.OperandToFloat(u & 0xFFFF) * act.OperandToFloat(v & 0xFFFF) + act.OperandToFloat(u >> 16) * act.OperandToFloat(v >> 16);
    }

    /// <summary>
    /// The step without fragments: each lane sums, straight from the swizzled tiles, the 64 outputs the mma layout gives
    /// it (emulating the fragments costs ~550 shuffles per step, each a barrier of OS threads on the CPU accelerator).
    /// </summary>
    private static WarpTile WarpStepReference<TX, TA>(ArrayView<ushort> tiles, int aTile, int bTile, int wm, int wn, int kk, int lane, WarpTile acc)
        where TX : unmanaged where TA : struct, IActivation<TX>
    {
        int m = aTile, r = wm * 64 + (lane >> 2), n = wn * 32 + 2 * (lane & 3);
        acc.C00 = Sum<TX, TA>(tiles, m, bTile, r, n, kk, acc.C00); acc.C01 = Sum<TX, TA>(tiles, m, bTile, r, n + 8, kk, acc.C01);
        acc.C02 = Sum<TX, TA>(tiles, m, bTile, r, n + 16, kk, acc.C02); acc.C03 = Sum<TX, TA>(tiles, m, bTile, r, n + 24, kk, acc.C03);
        acc.C10 = Sum<TX, TA>(tiles, m, bTile, r + 16, n, kk, acc.C10); acc.C11 = Sum<TX, TA>(tiles, m, bTile, r + 16, n + 8, kk, acc.C11);
        acc.C12 = Sum<TX, TA>(tiles, m, bTile, r + 16, n + 16, kk, acc.C12); acc.C13 = Sum<TX, TA>(tiles, m, bTile, r + 16, n + 24, kk, acc.C13);
        acc.C20 = Sum<TX, TA>(tiles, m, bTile, r + 32, n, kk, acc.C20); acc.C21 = Sum<TX, TA>(tiles, m, bTile, r + 32, n + 8, kk, acc.C21);
        acc.C22 = Sum<TX, TA>(tiles, m, bTile, r + 32, n + 16, kk, acc.C22); acc.C23 = Sum<TX, TA>(tiles, m, bTile, r + 32, n + 24, kk, acc.C23);
        acc.C30 = Sum<TX, TA>(tiles, m, bTile, r + 48, n, kk, acc.C30); acc.C31 = Sum<TX, TA>(tiles, m, bTile, r + 48, n + 8, kk, acc.C31);
        acc.C32 = Sum<TX, TA>(tiles, m, bTile, r + 48, n + 16, kk, acc.C32); acc.C33 = Sum<TX, TA>(tiles, m, bTile, r + 48, n + 24, kk, acc.C33);
        return acc;
    }

    /// <summary>c + the sums over k of (r, n), (r, n + 1), (r + 8, n), (r + 8, n + 1).</summary>
    private static Float4 Sum<TX, TA>(ArrayView<ushort> tiles, int aTile, int bTile, int r, int n, int kk, Float4 c)
        where TX : unmanaged where TA : struct, IActivation<TX>
    {
        var act = default(TA);
        for (int k = kk; k < kk + 16; k++)
        {
            int chunk = k >> 3, e = k & 7;
            float a0 = act.OperandToFloat(tiles[aTile + Swizzle(r, chunk) + e]), a1 = act.OperandToFloat(tiles[aTile + Swizzle(r + 8, chunk) + e]);
            float b0 = act.OperandToFloat(tiles[bTile + Swizzle(n, chunk) + e]), b1 = act.OperandToFloat(tiles[bTile + Swizzle(n + 1, chunk) + e]);
            c = new Float4(c.X + a0 * b0, c.Y + a0 * b1, c.Z + a1 * b0, c.W + a1 * b1);
        }
        return c;
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
        var spec = b.Accelerator.AcceleratorType == AcceleratorType.Cuda ? Spec(format, activation) : Spec<ReferencePath>(format, activation, "_reference");
        b.Launch(spec, new KernelConfig(grid, new Index2D(warps * 32, 1)), x, w.Cast<ushort>(), y, p);
    }

    /// <summary>QGemmMma_{format}_{activation}: the tensor-core kernel (what the PTX tests compile).</summary>
    public static KernelSpec Spec(DType format, DType activation) => Spec<TensorCorePath>(format, activation, "");

    /// <summary>The kernel of <paramref name="format"/> and <paramref name="activation"/> on path <typeparamref name="TP"/>.</summary>
    internal static KernelSpec Spec<TP>(DType format, DType activation, string suffix) where TP : struct, IMmaPath =>
        new($"QGemmMma_{format}_{activation}{suffix}", BlockDecoders.Visit<MethodInfo, Method<TP>>(format, new Method<TP>(activation)));

    private readonly record struct Method<TP>(DType Activation) : IDecoderVisitor<MethodInfo> where TP : struct, IMmaPath
    {
        public MethodInfo Visit<TW>() where TW : struct, IBlockDecoder => Activation switch
        {
            DType.F32 => Of<float, F32Activation, TW>(),
            DType.F16 => Of<ushort, F16Activation, TW>(),
            DType.BF16 => Of<ushort, BF16Activation, TW>(),
            _ => throw new NotSupportedException($"QMatMul activations must be F32, F16 or BF16, got {Activation}"),
        };

        private static MethodInfo Of<TX, TA, TW>() where TX : unmanaged where TA : struct, IActivation<TX> where TW : struct, IBlockDecoder =>
            ((Action<ArrayView<TX>, ArrayView<ushort>, ArrayView<TX>, QMatMulArgs>)Kernel<TX, TA, TW, TP>).Method;
    }
}
