using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.IR.Intrinsics;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// The bf16 GEMM's Hopper path (sm_90a only): wgmma.mma_async fed by TMA (cp.async.bulk.tensor) through an
/// mbarrier pipeline, all through inline PTX. Selected by <see cref="GemmSelect"/> on compute capability 9.0
/// for the k-contiguous layout pair (C = A B^T with A stored M x K and B stored N x K: the Linear layer's forward
/// product) when the operands are 16-byte aligned; every other case runs the mma.sync kernel.
///
/// Block 128 x 128 x 64, 2 warpgroups of 128 threads: warpgroup w multiplies rows 64 w.. of the block, one
/// wgmma.m64n128k16 per 16 of K (64 fp32 accumulators per thread, the mma C layout repeated over 16 n8 tiles).
/// Shared memory: 4 stages of an A and a B tile (128 rows of 64 bf16 = 128 bytes each, 16 KB per tile), written
/// by TMA with the 128-byte swizzle (16-byte chunk c of row r at c ^ (r % 8)) that the wgmma descriptors name;
/// 128 KB + barriers, past the 48 KB default (opted in). TMA zero-fills every element outside the matrix, so
/// edges cost nothing in the kernel.
///
/// Pipeline: thread 0 starts tiles 0..3 (one mbarrier per stage counts their bytes: arrive.expect_tx, then the
/// TMA's complete_tx). For tile t every thread waits on its stage's barrier (parity flips each round), the
/// warpgroups issue their 4 wgmma, commit and wait for them; after a block barrier thread 0 refills the stage with
/// tile t + 4. TMA stays 3 tiles ahead; the wgmma of consecutive tiles do not overlap: the accumulators pass between
/// two inline-PTX calls as values, and the moves that hand them over must not read registers of wgmma in flight
/// (ptxas would serialize every wgmma: C7514). Keeping them in flight across tiles needs the accumulators bound to
/// one register set across calls, which ILGPU's code generator cannot express.
///
/// The tensor maps (CUtensorMap, 128 bytes, made by cuTensorMapEncodeTiled on the host) live in device memory
/// and are copied there on the launch stream before the kernel, so stream order protects them.
///
/// On the CPU accelerator (<see cref="CpuReference"/>) the same tiles are copied plainly into the same swizzled
/// layout and each thread sums its 64 outputs in the wgmma accumulator layout: the tiling, the swizzle the
/// descriptors assume and the epilogue are tested in CI; TMA, the descriptors' encoding and wgmma themselves are
/// checked by ptxas (sm_90a) offline and can only run on an H100/H200.
/// </summary>
internal static class HgemmWgmma
{
    public const int BM = 128, BN = 128, BK = 64, Stages = 4, Threads = 256;
    internal const int TileBytes = BM * BK * 2;              // 16 KB
    internal const int StageBytes = 2 * TileBytes;           // A then B
    internal const int BarrierOffset = Stages * StageBytes;  // 4 x 8-byte mbarriers after the tiles
    public const int SharedBytes = 1024 + BarrierOffset + 8 * Stages; // + 1 KB to align the tiles to the swizzle atom

    internal static void Kernel<TP>(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, ArrayView<ushort> bias,
        ulong mapA, ulong mapB, GemmArgs p) where TP : struct, IGemmPath
    {
        bool hw = default(TP).TensorCores;
        int tid = Group.IdxX, batch = Grid.IdxY;
        var (mBlock, nBlock) = HgemmMma.BlockOf(Grid.IdxX, p.M, p.N);
        int m0 = mBlock * BM, n0 = nBlock * BN;
        var smem = SharedMemory.GetDynamic<ushort>();
        uint sbase = hw ? (Ptx.DynamicSharedBase() + 1023u) & ~1023u : 0u;    // the 128-byte swizzle repeats every 1024 bytes
        int tiles = (p.K + BK - 1) >> 6;
        int wg = tid >> 7;

        var acc = default(Acc64);
        if (hw)
        {
            uint barriers = sbase + BarrierOffset;
            if (tid == 0)
            {
                for (int s = 0; s < Stages; s++) Wgmma.InitBarrier(barriers + (uint)(8 * s), 1);
                Wgmma.FenceBarrierInit();
            }
            Group.Barrier();
            // An operand shared by the batch (batch stride 0, a Linear layer's weight) is a 1-deep tensor map: its batch coordinate is 0.
            int batchA = p.BatchStrideA == 0 ? 0 : batch, batchB = p.BatchStrideB == 0 ? 0 : batch;
            if (tid == 0)
                for (int s = 0; s < Stages && s < tiles; s++) Load(sbase, barriers, s, s, mapA, mapB, m0, n0, batchA, batchB);

            int stage = 0, phase = 0;
            for (int t = 0; t < tiles; t++)
            {
                while (Wgmma.TryWait(barriers + (uint)(8 * stage), (uint)phase) == 0) { }
                acc = Wgmma.Tile64(acc, Descriptor(TileA(sbase, stage, wg)), Descriptor(TileB(sbase, stage)), 1u);
                // All of this tile's wgmma done before the accumulators cross into the next call (its moves read them: a read
                // of in-flight accumulators makes ptxas serialize every wgmma), and tile t's stage is free.
                Wgmma.WaitAll();
                Group.Barrier();
                int refill = t + Stages;     // into tile t's stage
                if (tid == 0 && refill < tiles) Load(sbase, barriers, stage, refill, mapA, mapB, m0, n0, batchA, batchB);
                if (++stage == Stages)
                {
                    stage = 0;
                    phase ^= 1;
                }
            }
            Wgmma.WaitAll();
        }
        else
        {
            var ab = a.SubView(batch * p.BatchStrideA);
            var bb = b.SubView(batch * p.BatchStrideB);
            for (int t = 0; t < tiles; t++)
            {
                Group.Barrier();
                CopyPlain(ab, smem, 0, m0, t * BK, p.M, p.K, p.Lda, tid);
                CopyPlain(bb, smem, TileBytes, n0, t * BK, p.N, p.K, p.Ldb, tid);
                Group.Barrier();
                acc = SumPlain(acc, smem, tid);
            }
        }

        var cb = c.SubView(batch * p.BatchStrideC);
        var (r0, c0) = FragmentOrigin(tid);
        int row = m0 + r0, col = n0 + c0;
        Store(cb, bias, p, row, col, acc.C0, acc.C1, acc.C2, acc.C3);
        Store(cb, bias, p, row, col + 32, acc.C4, acc.C5, acc.C6, acc.C7);
        Store(cb, bias, p, row, col + 64, acc.C8, acc.C9, acc.C10, acc.C11);
        Store(cb, bias, p, row, col + 96, acc.C12, acc.C13, acc.C14, acc.C15);
    }

    /// <summary>Shared address of warpgroup <paramref name="wg"/>'s 64 rows of A in a stage (a multiple of 1024 past the aligned base).</summary>
    internal static uint TileA(uint sbase, int stage, int wg) => sbase + (uint)(stage * StageBytes + wg * 64 * 128);

    /// <summary>Shared address of a stage's B tile (128 rows n of 64 k).</summary>
    internal static uint TileB(uint sbase, int stage) => sbase + (uint)(stage * StageBytes + TileBytes);

    /// <summary>
    /// The block-relative (row, column) of a thread's first accumulator: thread (warp, g = lane / 4, t = lane % 4) of
    /// warpgroup wg holds, for n8 tile n, C[64 wg + 16 warp + g (+ 8)][8 n + 2t (+ 1)]: Acc64.Cn's X, Y, Z, W are
    /// (r, c + 8n), (r, c + 8n + 1), (r + 8, c + 8n), (r + 8, c + 8n + 1). WgmmaLayoutTests holds this to the PTX ISA's
    /// wgmma.m64nNk16 accumulator layout.
    /// </summary>
    internal static (int Row, int Col) FragmentOrigin(int tid) => (64 * (tid >> 7) + 16 * ((tid >> 5) & 3) + ((tid & 31) >> 2), 2 * (tid & 3));

    /// <summary>Thread 0: tile <paramref name="tile"/>'s A and B boxes (128 rows x 64 k each, 32 KB) into a stage, counted on its barrier.</summary>
    private static void Load(uint sbase, uint barriers, int stage, int tile, ulong mapA, ulong mapB, int m0, int n0, int batchA, int batchB)
    {
        uint barrier = barriers + (uint)(8 * stage);
        uint dst = sbase + (uint)(stage * StageBytes);
        Wgmma.ExpectBytes(barrier, StageBytes);
        Wgmma.TmaLoad3d(dst, mapA, tile * BK, m0, batchA, barrier);
        Wgmma.TmaLoad3d(dst + TileBytes, mapB, tile * BK, n0, batchB, barrier);
    }

    /// <summary>
    /// The wgmma descriptor of a k-contiguous 128-byte-swizzled tile at a shared address: start address / 16 (bits 0-13),
    /// leading byte offset 1 (unused by swizzled k-major layouts), stride byte offset 1024 / 16 (8 rows of 128 bytes,
    /// bits 32-45), swizzle mode 1 = 128 bytes (bits 62-63). k16 step j starts 32 j bytes later: + 2 j.
    /// </summary>
    internal static ulong Descriptor(uint address) => ((address & 0x3FFFFu) >> 4) | (1UL << 16) | ((ulong)(1024 >> 4) << 32) | (1UL << 62);

    /// <summary>The plain path's copy of a 128 x 64 tile of a k-contiguous operand into the 128-byte-swizzled layout (zeros outside).</summary>
    private static void CopyPlain(ArrayView<ushort> x, ArrayView<ushort> smem, int tileBytes, int mn0, int k0, int mnExtent, int k, int ld, int tid)
    {
        for (int e = tid; e < BM * BK; e += Threads)
        {
            int row = e >> 6, kk = e & 63;
            int at = (tileBytes + Swizzled(row, kk)) >> 1;
            int gm = mn0 + row, gk = k0 + kk;
            smem[at] = gm < mnExtent && gk < k ? x[(long)gm * ld + gk] : (ushort)0;
        }
    }

    /// <summary>Byte offset of element (row, k) of a tile of 128-byte rows with the 128-byte swizzle.</summary>
    internal static int Swizzled(int row, int k) => row * 128 + ((((k >> 3) ^ (row & 7))) << 4) + ((k & 7) << 1);

    /// <summary>The plain twin of a 64-deep step: the thread's 64 outputs (wgmma layout) as float sums over the swizzled tiles.</summary>
    private static Acc64 SumPlain(Acc64 acc, ArrayView<ushort> smem, int tid)
    {
        var (r, c0) = FragmentOrigin(tid);
        acc.C0 = Quad(acc.C0, smem, r, c0); acc.C1 = Quad(acc.C1, smem, r, c0 + 8); acc.C2 = Quad(acc.C2, smem, r, c0 + 16); acc.C3 = Quad(acc.C3, smem, r, c0 + 24);
        acc.C4 = Quad(acc.C4, smem, r, c0 + 32); acc.C5 = Quad(acc.C5, smem, r, c0 + 40); acc.C6 = Quad(acc.C6, smem, r, c0 + 48); acc.C7 = Quad(acc.C7, smem, r, c0 + 56);
        acc.C8 = Quad(acc.C8, smem, r, c0 + 64); acc.C9 = Quad(acc.C9, smem, r, c0 + 72); acc.C10 = Quad(acc.C10, smem, r, c0 + 80); acc.C11 = Quad(acc.C11, smem, r, c0 + 88);
        acc.C12 = Quad(acc.C12, smem, r, c0 + 96); acc.C13 = Quad(acc.C13, smem, r, c0 + 104); acc.C14 = Quad(acc.C14, smem, r, c0 + 112); acc.C15 = Quad(acc.C15, smem, r, c0 + 120);
        return acc;
    }

    /// <summary>(r, c), (r, c + 1), (r + 8, c), (r + 8, c + 1) over the tile's 64 k.</summary>
    private static Float4 Quad(Float4 q, ArrayView<ushort> smem, int r, int c)
    {
        var f = default(BF16AsFloat);
        for (int k = 0; k < BK; k++)
        {
            float a0 = f.Load(smem[Swizzled(r, k) >> 1]), a1 = f.Load(smem[Swizzled(r + 8, k) >> 1]);
            float b0 = f.Load(smem[(TileBytes + Swizzled(c, k)) >> 1]), b1 = f.Load(smem[(TileBytes + Swizzled(c + 1, k)) >> 1]);
            q = new Float4(q.X + a0 * b0, q.Y + a0 * b1, q.Z + a1 * b0, q.W + a1 * b1);
        }
        return q;
    }

    /// <summary>Four n8 tiles (32 columns) of the thread's two rows through the epilogue.</summary>
    private static void Store(ArrayView<ushort> c, ArrayView<ushort> bias, in GemmArgs p, int row, int col, Float4 t0, Float4 t1, Float4 t2, Float4 t3)
    {
        StoreTile(c, bias, p, row, col, t0);
        StoreTile(c, bias, p, row, col + 8, t1);
        StoreTile(c, bias, p, row, col + 16, t2);
        StoreTile(c, bias, p, row, col + 24, t3);
    }

    private static void StoreTile(ArrayView<ushort> c, ArrayView<ushort> bias, in GemmArgs p, int row, int col, Float4 v)
    {
        StoreOne(c, bias, p, row, col, v.X);
        StoreOne(c, bias, p, row, col + 1, v.Y);
        StoreOne(c, bias, p, row + 8, col, v.Z);
        StoreOne(c, bias, p, row + 8, col + 1, v.W);
    }

    private static void StoreOne(ArrayView<ushort> c, ArrayView<ushort> bias, in GemmArgs p, int row, int col, float acc)
    {
        if (row >= p.M || col >= p.N) return;
        var f = default(BF16AsFloat);
        int i = row * p.Ldc + col;
        float old = p.Beta != 0f ? f.Load(c[i]) : 0f;
        float b = p.HasBias != 0 ? f.Load(bias[col]) : 0f;
        c[i] = f.Store(GemmEpilogue.Apply(acc, old, b, p));
    }

    // ---- launch ----

    private static long Offset(ArrayView<ushort> v) => v.Length == 0 ? 0 : ((IContiguousArrayView)v).IndexInBytes / 2;

    /// <summary>
    /// Whether the Hopper kernel takes this problem: bf16, A and B k-contiguous, rows and batches 16-byte aligned (TMA's
    /// global address and strides must be multiples of 16 bytes). A batch stride of 0 (an operand shared by the batch) is fine.
    /// </summary>
    public static bool Supports(DType format, in GemmArgs p, long aOffset, long bOffset, int batch)
    {
        var (aK, bK) = OperandLayout.Of(p);
        return format == DType.BF16 && aK && bK && p.Lda % 8 == 0 && p.Ldb % 8 == 0 && aOffset % 8 == 0 && bOffset % 8 == 0
            && (batch == 1 || (p.BatchStrideA % 8 == 0 && p.BatchStrideB % 8 == 0));
    }

    /// <summary>Whether an accelerator runs the wgmma path: a CUDA device of compute capability 9.0 (H100, H200, GH200).</summary>
    public static bool Available(Accelerator accelerator) => accelerator is CudaAccelerator cuda && cuda.Architecture.Major == 9;

    /// <summary>The sm_90a kernel (<paramref name="hopper"/>) or its plain path, which needs shared memory for one stage only.</summary>
    public static KernelSpec Spec(bool hopper)
    {
        var spec = GemmLaunch.Spec(hopper ? "hgemm_wgmma_bf16_NT" : "hgemm_wgmma_bf16_NT_cpu", typeof(HgemmWgmma), hopper ? typeof(CudaAsync) : typeof(CpuReference));
        return spec with { DynamicSharedBytes = hopper ? SharedBytes : StageBytes, ArchSpecific = hopper };
    }

    /// <summary>C = act(alpha A B^T + beta C + bias) on an H100/H200 (or, on a non-CUDA accelerator, its plain path, for tests).</summary>
    public static void Launch(Accelerator accelerator, ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<ushort> c, ArrayView<ushort> bias, GemmArgs p, int batch)
    {
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(HgemmWgmma));
        if (!Supports(DType.BF16, p, Offset(a), Offset(b), batch))
            throw new ArgumentException($"{nameof(HgemmWgmma)} takes bf16 A (M x K) and B (N x K), k contiguous, 16-byte aligned rows and batches");
        if (p.M == 0 || p.N == 0) return;
        bool hopper = accelerator.AcceleratorType == AcceleratorType.Cuda;
        var spec = Spec(hopper);
        ulong mapA = 0, mapB = 0;
        if (hopper) (mapA, mapB) = TensorMaps.Upload(accelerator, a, b, p, batch);
        int blocks = GemmLaunch.CeilDiv(p.M, BM) * GemmLaunch.CeilDiv(p.N, BN);
        KernelCache.For(accelerator).Launch(spec, new KernelConfig(new Index2D(blocks, batch), new Index2D(Threads, 1), SharedMemoryConfig.RequestDynamic<byte>(spec.DynamicSharedBytes)),
            a, b, c, bias.OrDummy(accelerator), mapA, mapB, p);
    }
}

/// <summary>64 fp32 accumulators: one thread's share of a wgmma.m64n128 result (C0..C15: n8 tiles 0..15 in the mma C layout).</summary>
internal struct Acc64
{
    public Float4 C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15;
}

/// <summary>
/// Hopper's instructions with register results or operands, as PtxInline intrinsics (sm_90a, PTX ISA 8.0). The
/// accumulators of <see cref="Tile64"/> go in and out as one 64-register value: the template moves the inputs to the
/// outputs, which ptxas coalesces, so the wgmma chain runs on one set of registers (ptxas -v warns when it cannot
/// and serializes the wgmma instead; KernelBudgetTests would show it).
/// </summary>
internal static class Wgmma
{
    private static NotSupportedException HopperOnly() => new("this PTX instruction runs on sm_90a only");

    [IntrinsicImplementation, Ptx("mbarrier.init.shared::cta.b64 [%0], %1;")]
    public static void InitBarrier(uint address, uint count) => throw HopperOnly();

    /// <summary>Makes the barriers' initialization visible to the async proxy (TMA) and the other threads.</summary>
    [IntrinsicImplementation, Ptx("fence.mbarrier_init.release.cluster;")]
    public static void FenceBarrierInit() => throw HopperOnly();

    /// <summary>Arrives on a barrier and adds <paramref name="bytes"/> to the transaction count its phase waits for.</summary>
    [IntrinsicImplementation, Ptx("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;")]
    public static void ExpectBytes(uint barrier, uint bytes) => throw HopperOnly();

    /// <summary>1 when the barrier's phase of parity <paramref name="parity"/> has completed, else 0 (after a bounded wait in hardware).</summary>
    [IntrinsicImplementation, Ptx("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }")]
    public static uint TryWait(uint barrier, uint parity) => throw HopperOnly();

    /// <summary>TMA: a box of a 3-D tensor (coordinates k, row, batch) into shared memory, completing bytes on the barrier.</summary>
    [IntrinsicImplementation, Ptx("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];")]
    public static void TmaLoad3d(uint dst, ulong map, int k, int row, int batch, uint barrier) => throw HopperOnly();

    /// <summary>Waits until at most one wgmma group of this thread is pending.</summary>
    [IntrinsicImplementation, Ptx("wgmma.wait_group.sync.aligned 1;")]
    public static void WaitAllButNewest() => throw HopperOnly();

    [IntrinsicImplementation, Ptx("wgmma.wait_group.sync.aligned 0;")]
    public static void WaitAll() => throw HopperOnly();

    /// <summary>
    /// acc += A (64 x 64, k-major) B^T (128 x 64, k-major) for the warpgroup (acc is replaced when accumulate is 0): fence,
    /// four wgmma.m64n128k16 (descriptors advanced by 32 bytes, i.e. + 2, per k16), commit. The result is in flight
    /// until a wait_group.
    /// </summary>
    [IntrinsicImplementation, Ptx(Tile64Template)]
    public static Acc64 Tile64(Acc64 acc, ulong descA, ulong descB, uint accumulate) => throw HopperOnly();

    private const string Moves =
        "mov.b32 %0, %64; mov.b32 %1, %65; mov.b32 %2, %66; mov.b32 %3, %67; mov.b32 %4, %68; mov.b32 %5, %69; mov.b32 %6, %70; mov.b32 %7, %71; " +
        "mov.b32 %8, %72; mov.b32 %9, %73; mov.b32 %10, %74; mov.b32 %11, %75; mov.b32 %12, %76; mov.b32 %13, %77; mov.b32 %14, %78; mov.b32 %15, %79; " +
        "mov.b32 %16, %80; mov.b32 %17, %81; mov.b32 %18, %82; mov.b32 %19, %83; mov.b32 %20, %84; mov.b32 %21, %85; mov.b32 %22, %86; mov.b32 %23, %87; " +
        "mov.b32 %24, %88; mov.b32 %25, %89; mov.b32 %26, %90; mov.b32 %27, %91; mov.b32 %28, %92; mov.b32 %29, %93; mov.b32 %30, %94; mov.b32 %31, %95; " +
        "mov.b32 %32, %96; mov.b32 %33, %97; mov.b32 %34, %98; mov.b32 %35, %99; mov.b32 %36, %100; mov.b32 %37, %101; mov.b32 %38, %102; mov.b32 %39, %103; " +
        "mov.b32 %40, %104; mov.b32 %41, %105; mov.b32 %42, %106; mov.b32 %43, %107; mov.b32 %44, %108; mov.b32 %45, %109; mov.b32 %46, %110; mov.b32 %47, %111; " +
        "mov.b32 %48, %112; mov.b32 %49, %113; mov.b32 %50, %114; mov.b32 %51, %115; mov.b32 %52, %116; mov.b32 %53, %117; mov.b32 %54, %118; mov.b32 %55, %119; " +
        "mov.b32 %56, %120; mov.b32 %57, %121; mov.b32 %58, %122; mov.b32 %59, %123; mov.b32 %60, %124; mov.b32 %61, %125; mov.b32 %62, %126; mov.b32 %63, %127; ";

    private const string D =
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " +
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}";

    private const string Mma = "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " + D;

    internal const string Tile64Template =
        "{ .reg .b64 da, db; .reg .pred p; setp.ne.u32 p, %130, 0; " + Moves +
        "wgmma.fence.sync.aligned; " +
        Mma + ", %128, %129, p, 1, 1, 0, 0; " +
        "add.s64 da, %128, 2; add.s64 db, %129, 2; " + Mma + ", da, db, p, 1, 1, 0, 0; " +
        "add.s64 da, %128, 4; add.s64 db, %129, 4; " + Mma + ", da, db, p, 1, 1, 0, 0; " +
        "add.s64 da, %128, 6; add.s64 db, %129, 6; " + Mma + ", da, db, p, 1, 1, 0, 0; " +
        "wgmma.commit_group.sync.aligned; }";
}

/// <summary>
/// The TMA descriptors of a launch (CUtensorMap, made by the driver's cuTensorMapEncodeTiled) in device memory: A and B
/// as 3-D bf16 tensors (K, rows, batch) with 64 x 128 x 1 boxes and the 128-byte swizzle; out-of-bounds elements read
/// as zero. One 256-byte buffer per accelerator, rewritten by a copy on the launch stream before each launch (stream
/// order keeps earlier kernels' maps intact until they ran).
/// </summary>
internal static class TensorMaps
{
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Accelerator, MemoryBuffer1D<ulong, Stride1D.Dense>> Buffers = new();

    private const int BFloat16 = 9;        // CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
    private const int InterleaveNone = 0;  // CU_TENSOR_MAP_INTERLEAVE_NONE
    private const int Swizzle128B = 3;     // CU_TENSOR_MAP_SWIZZLE_128B
    private const int L2Promotion128B = 2; // CU_TENSOR_MAP_L2_PROMOTION_L2_128B
    private const int OobFillZeros = 0;    // CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE: zeros

    [DllImport("cuda", EntryPoint = "cuTensorMapEncodeTiled")]
    private static extern unsafe int EncodeTiled(ulong* map, int dataType, uint rank, IntPtr address, ulong* dims, ulong* strides,
        uint* box, uint* elementStrides, int interleave, int swizzle, int l2Promotion, int oobFill);

    public static unsafe (ulong A, ulong B) Upload(Accelerator accelerator, ArrayView<ushort> a, ArrayView<ushort> b, in GemmArgs p, int batch)
    {
        var host = new ulong[32];
        fixed (ulong* m = host)
        {
            Encode(m, GemmLaunch.DeviceAddress(a), p.K, p.M, p.Lda, p.BatchStrideA == 0 ? 1 : batch, p.BatchStrideA);
            Encode(m + 16, GemmLaunch.DeviceAddress(b), p.K, p.N, p.Ldb, p.BatchStrideB == 0 ? 1 : batch, p.BatchStrideB);
        }
        var buffer = Buffers.GetValue(accelerator, acc => acc.Allocate1D<ulong>(32));
        buffer.View.CopyFromCPU(accelerator.DefaultStream, host);
        ulong address = GemmLaunch.DeviceAddress(buffer.View.AsContiguous());
        return (address, address + 128);
    }

    private static unsafe void Encode(ulong* map, ulong address, int k, int rows, int ld, int batch, long batchStride)
    {
        ulong* dims = stackalloc ulong[] { (ulong)k, (ulong)rows, (ulong)batch };
        ulong* strides = stackalloc ulong[] { (ulong)ld * 2, (ulong)(batch > 1 ? batchStride : (long)rows * ld) * 2 }; // bytes, dims 1 and 2
        uint* box = stackalloc uint[] { HgemmWgmma.BK, HgemmWgmma.BM, 1 };
        uint* elementStrides = stackalloc uint[] { 1, 1, 1 };
        int error = EncodeTiled(map, BFloat16, 3, (IntPtr)(long)address, dims, strides, box, elementStrides, InterleaveNone, Swizzle128B, L2Promotion128B, OobFillZeros);
        if (error != 0) throw new InvalidOperationException($"cuTensorMapEncodeTiled failed with CUDA error {error} (K {k}, rows {rows}, ld {ld}, batch {batch})");
    }
}
