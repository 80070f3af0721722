using ILGPU;
using ILGPU.Runtime;

using ManagedTensor.Gpu.Gemm;

namespace ManagedTensor.Gpu.Bench.SgemmLadder;

/// <summary>
/// SGEMM version 2: shared-memory tiles. A group of 16 x 16 threads computes a 16 x 16 block of C; for
/// each 16-wide slice of K it copies a 16 x 16 tile of op(A) and of op(B) into shared memory (one element
/// per thread, zero outside the matrix), synchronizes, and each thread accumulates its element from the
/// tiles. Every global element is now read once per 16 uses instead of once per use.
/// Still one output per thread: two shared loads per FMA keep it far from the FMA units' peak.
/// </summary>
internal static class Sgemm2SharedTiles
{
    public const int Tile = 16;

    internal static void Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmArgs p)
    {
        int tx = Group.IdxX, ty = Group.IdxY;
        int col0 = Grid.IdxX * Tile, row0 = Grid.IdxY * Tile, batch = Grid.IdxZ;
        var ab = a.SubView(batch * p.BatchStrideA);
        var bb = b.SubView(batch * p.BatchStrideB);
        var cb = c.SubView(batch * p.BatchStrideC);
        var aTile = SharedMemory.Allocate<float>(Tile * Tile); // [row][k]
        var bTile = SharedMemory.Allocate<float>(Tile * Tile); // [k][col]
        int row = row0 + ty, col = col0 + tx;

        float sum = 0f;
        for (int k0 = 0; k0 < p.K; k0 += Tile)
        {
            // Thread (ty, tx) loads op(A)[row, k0 + tx] and op(B)[k0 + ty, col].
            int ka = k0 + tx, kb = k0 + ty;
            aTile[ty * Tile + tx] = row < p.M && ka < p.K ? (p.TransA != 0 ? ab[ka * p.Lda + row] : ab[row * p.Lda + ka]) : 0f;
            bTile[ty * Tile + tx] = kb < p.K && col < p.N ? (p.TransB != 0 ? bb[col * p.Ldb + kb] : bb[kb * p.Ldb + col]) : 0f;
            Group.Barrier();
            for (int k = 0; k < Tile; k++) sum += aTile[ty * Tile + k] * bTile[k * Tile + tx];
            Group.Barrier();
        }
        if (row < p.M && col < p.N) GemmEpilogue.StoreF32(cb, row, col, sum, bias, p);
    }

    public static void Launch(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, GemmArgs p, int batch = 1)
    {
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(Sgemm2SharedTiles));
        if (p.M == 0 || p.N == 0) return;
        var spec = GemmLaunch.Spec("sgemm2", typeof(Sgemm2SharedTiles));
        var grid = new Index3D(GemmLaunch.CeilDiv(p.N, Tile), GemmLaunch.CeilDiv(p.M, Tile), batch);
        KernelCache.For(accelerator).Launch(spec, new KernelConfig(grid, new Index3D(Tile, Tile, 1)), a, b, c, bias.OrDummy(accelerator), p);
    }
}
