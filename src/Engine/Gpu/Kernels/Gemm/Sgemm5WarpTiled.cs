using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// SGEMM version 5: warp tiling and register prefetch (the fast float32 kernel).
/// Block 128 x 128 x 16, 256 threads = 8 warps in a 2 (M) x 4 (N) grid; each warp owns a 64 x 32 tile of C
/// and each lane a 2 x 2 arrangement of 4 x 4 tiles spaced 32 rows and 16 columns apart (64 accumulators).
/// Why the spacing: for a given k, the 32 lanes of a warp then read 8 consecutive float4 of op(A) and
/// 4 consecutive float4 of op(B) from shared memory, each a single conflict-free wavefront shared by the
/// lanes that need it (version 4's contiguous 8 x 8 per thread reads B 32 bytes apart: 2-way conflicts).
/// Prefetch: tile t + 1 is loaded from global memory into registers before the math on tile t and stored
/// to the other of two shared buffers after it, so global latency hides behind 16 x 64 FMAs per thread,
/// with one barrier per tile. Same alignment rules as version 4.
/// </summary>
internal static class Sgemm5WarpTiled
{
    public const int BM = 128, BN = 128, BK = 16, Threads = 256;
    private const int TileFloats = BK * BM; // one operand's tile; BM == BN

    internal static void Kernel<TA, TB>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmArgs p)
        where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int tid = Group.IdxX;
        int n0 = Grid.IdxX * BN, m0 = Grid.IdxY * BM, batch = Grid.IdxZ;
        var ab = a.SubView(batch * p.BatchStrideA).AsAligned(16);
        var bb = b.SubView(batch * p.BatchStrideB).AsAligned(16);
        var cb = c.SubView(batch * p.BatchStrideC).AsAligned(16);
        // Two buffers of [k][m] and [k][n] tiles: buffer s of A at s * TileFloats.
        var aTiles = SharedMemory.Allocate<float>(2 * TileFloats);
        var bTiles = SharedMemory.Allocate<float>(2 * TileFloats);
        var aTiles4 = aTiles.Cast<Float4>();
        var bTiles4 = bTiles.Cast<Float4>();

        int warp = tid / 32, lane = tid % 32;
        int wm = warp / 4, wn = warp % 4;          // the warp's 64 x 32 tile of the block
        int tm = lane / 4, tn = lane % 4;          // the lane's place in each 32 x 16 subtile
        int aRead = (wm * 64 + tm * 4) / 4;        // float4 index within a k-row of the A tile
        int bRead = (wn * 32 + tn * 4) / 4;

        // 128 x 16 = 512 float4 per operand tile: float4 number tid and tid + 256.
        int tiles = (p.K + BK - 1) / BK;
        var ra0 = VectorTiles.Load<TA>(ab, tid, m0, 0, p.M, p.K, p.Lda, BM, BK);
        var ra1 = VectorTiles.Load<TA>(ab, tid + Threads, m0, 0, p.M, p.K, p.Lda, BM, BK);
        var rb0 = VectorTiles.Load<TB>(bb, tid, n0, 0, p.N, p.K, p.Ldb, BN, BK);
        var rb1 = VectorTiles.Load<TB>(bb, tid + Threads, n0, 0, p.N, p.K, p.Ldb, BN, BK);
        StoreTiles<TA, TB>(aTiles.SubView(0, TileFloats), bTiles.SubView(0, TileFloats), ra0, ra1, rb0, rb1, tid);
        Group.Barrier();

        Tile4x4 c00 = default, c01 = default, c10 = default, c11 = default;
        for (int t = 0; t < tiles; t++)
        {
            int s = t & 1;
            bool more = t + 1 < tiles;
            if (more)
            {
                int k0 = (t + 1) * BK;
                ra0 = VectorTiles.Load<TA>(ab, tid, m0, k0, p.M, p.K, p.Lda, BM, BK);
                ra1 = VectorTiles.Load<TA>(ab, tid + Threads, m0, k0, p.M, p.K, p.Lda, BM, BK);
                rb0 = VectorTiles.Load<TB>(bb, tid, n0, k0, p.N, p.K, p.Ldb, BN, BK);
                rb1 = VectorTiles.Load<TB>(bb, tid + Threads, n0, k0, p.N, p.K, p.Ldb, BN, BK);
            }
            int aBase = s * (TileFloats / 4) + aRead, bBase = s * (TileFloats / 4) + bRead;
            for (int k = 0; k < BK; k += 2) // unrolled by two by hand (ILGPU 1.5.3 does not unroll)
            {
                var a0 = aTiles4[aBase + k * (BM / 4)];
                var a1 = aTiles4[aBase + k * (BM / 4) + 8];   // 32 rows further
                var b0 = bTiles4[bBase + k * (BN / 4)];
                var b1 = bTiles4[bBase + k * (BN / 4) + 4];   // 16 columns further
                c00 = Tile4x4.Fma(c00, a0, b0);
                c01 = Tile4x4.Fma(c01, a0, b1);
                c10 = Tile4x4.Fma(c10, a1, b0);
                c11 = Tile4x4.Fma(c11, a1, b1);
                a0 = aTiles4[aBase + (k + 1) * (BM / 4)];
                a1 = aTiles4[aBase + (k + 1) * (BM / 4) + 8];
                b0 = bTiles4[bBase + (k + 1) * (BN / 4)];
                b1 = bTiles4[bBase + (k + 1) * (BN / 4) + 4];
                c00 = Tile4x4.Fma(c00, a0, b0);
                c01 = Tile4x4.Fma(c01, a0, b1);
                c10 = Tile4x4.Fma(c10, a1, b0);
                c11 = Tile4x4.Fma(c11, a1, b1);
            }
            if (more)
                StoreTiles<TA, TB>(aTiles.SubView((1 - s) * TileFloats, TileFloats), bTiles.SubView((1 - s) * TileFloats, TileFloats),
                    ra0, ra1, rb0, rb1, tid);
            Group.Barrier();
        }

        bool vector = p.Ldc % 4 == 0;
        int row = m0 + wm * 64 + tm * 4, col = n0 + wn * 32 + tn * 4;
        c00.Store(cb, row, col, bias, p, vector);
        c01.Store(cb, row, col + 16, bias, p, vector);
        c10.Store(cb, row + 32, col, bias, p, vector);
        c11.Store(cb, row + 32, col + 16, bias, p, vector);
    }

    private static void StoreTiles<TA, TB>(ArrayView<float> aTile, ArrayView<float> bTile, Float4 ra0, Float4 ra1, Float4 rb0, Float4 rb1, int tid)
        where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        var aTile4 = aTile.Cast<Float4>();
        var bTile4 = bTile.Cast<Float4>();
        VectorTiles.Store<TA>(aTile, aTile4, ra0, tid, BM, BK);
        VectorTiles.Store<TA>(aTile, aTile4, ra1, tid + Threads, BM, BK);
        VectorTiles.Store<TB>(bTile, bTile4, rb0, tid, BN, BK);
        VectorTiles.Store<TB>(bTile, bTile4, rb1, tid + Threads, BN, BK);
    }

    public static void Launch(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, GemmArgs p, int batch = 1)
    {
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(Sgemm5WarpTiled));
        VectorTiles.CheckAligned(p, a, b, c, nameof(Sgemm5WarpTiled));
        if (p.M == 0 || p.N == 0) return;
        var (aK, bK) = OperandLayout.Of(p);
        var spec = GemmLaunch.Spec($"sgemm5_{(aK ? 'N' : 'T')}{(bK ? 'T' : 'N')}", typeof(Sgemm5WarpTiled), GemmLaunch.Layout(aK), GemmLaunch.Layout(bK));
        var grid = new Index3D(GemmLaunch.CeilDiv(p.N, BN), GemmLaunch.CeilDiv(p.M, BM), batch);
        KernelCache.For(accelerator).Launch(spec, new KernelConfig(grid, new Index3D(Threads, 1, 1)), a, b, c, bias.OrDummy(accelerator), p);
    }
}
