using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// SGEMM version 3: register blocking. A group of 256 threads computes a 64 x 64 block of C, each thread
/// a 4 x 4 tile of it held in registers (<see cref="Tile4x4"/>). Per step k of a 16-deep slice, a thread
/// reads 4 values of op(A) and 4 of op(B) from shared memory (two 16-byte loads) and does 16 FMAs: the
/// ratio of shared loads to FMAs drops from 2:1 (version 2) to 1:8.
/// Shared tiles are k-major (aTile[k][m], bTile[k][n]) so that both reads are contiguous 16-byte loads;
/// op(A)'s tile is transposed on the way in when A is stored M x K.
/// Global loads are scalar and bounds-checked, so any shape, leading dimension and offset works:
/// this is the fallback when the vectorized versions' alignment rules do not hold, and the pick for
/// problems too small to fill the GPU with 128 x 128 blocks.
/// </summary>
internal static class Sgemm3RegisterBlocked
{
    public const int BM = 64, BN = 64, BK = 16, Threads = 256;

    internal static void Kernel<TA, TB>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmArgs p)
        where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int tid = Group.IdxX;
        int n0 = Grid.IdxX * BN, m0 = Grid.IdxY * BM, batch = Grid.IdxZ;
        var ab = a.SubView(batch * p.BatchStrideA);
        var bb = b.SubView(batch * p.BatchStrideB);
        var cb = c.SubView(batch * p.BatchStrideC);
        var aTile = SharedMemory.Allocate<float>(BK * BM);
        var bTile = SharedMemory.Allocate<float>(BK * BN);
        var aTile4 = aTile.Cast<Float4>();
        var bTile4 = bTile.Cast<Float4>();
        int tx = tid % 16, ty = tid / 16; // this thread's C tile: rows m0 + 4 ty .., columns n0 + 4 tx ..

        var acc = default(Tile4x4);
        for (int k0 = 0; k0 < p.K; k0 += BK)
        {
            // 1024 elements per tile, 4 per thread; consecutive threads take consecutive stored addresses.
            for (int i = 0; i < 4; i++)
            {
                int l = tid + i * Threads;
                LoadElement<TA>(ab, aTile, l, m0, k0, p.M, p.K, p.Lda, BM);
                LoadElement<TB>(bb, bTile, l, n0, k0, p.N, p.K, p.Ldb, BN);
            }
            Group.Barrier();
            for (int k = 0; k < BK; k++)
                acc = Tile4x4.Fma(acc, aTile4[k * (BM / 4) + ty], bTile4[k * (BN / 4) + tx]);
            Group.Barrier();
        }
        acc.Store(cb, m0 + 4 * ty, n0 + 4 * tx, bias, p, vector: false);
    }

    /// <summary>Element l of a (mn, k) tile into tile[k][mn], zero outside the matrix.</summary>
    private static void LoadElement<TLayout>(ArrayView<float> x, ArrayView<float> tile, int l, int mn0, int k0,
        int mnSize, int kSize, int ld, int tileMn) where TLayout : struct, IOperandLayout
    {
        int mn, k;
        if (default(TLayout).IsKInner) { k = l % BK; mn = l / BK; }
        else { mn = l % tileMn; k = l / tileMn; }
        int gm = mn0 + mn, gk = k0 + k;
        tile[k * tileMn + mn] = gm < mnSize && gk < kSize ? x[OperandLayout.Index<TLayout>(gm, gk, ld)] : 0f;
    }

    public static void Launch(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, GemmArgs p, int batch = 1)
    {
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(Sgemm3RegisterBlocked));
        if (p.M == 0 || p.N == 0) return;
        var (aK, bK) = OperandLayout.Of(p);
        var spec = GemmLaunch.Spec($"sgemm3_{(aK ? 'N' : 'T')}{(bK ? 'T' : 'N')}", typeof(Sgemm3RegisterBlocked), GemmLaunch.Layout(aK), GemmLaunch.Layout(bK));
        var grid = new Index3D(GemmLaunch.CeilDiv(p.N, BN), GemmLaunch.CeilDiv(p.M, BM), batch);
        KernelCache.For(accelerator).Launch(spec, new KernelConfig(grid, new Index3D(Threads, 1, 1)), a, b, c, bias.OrDummy(accelerator), p);
    }
}
