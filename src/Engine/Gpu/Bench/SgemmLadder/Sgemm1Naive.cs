using ILGPU;
using ILGPU.Runtime;

using ManagedTensor.Gpu.Gemm;

namespace ManagedTensor.Gpu.Bench.SgemmLadder;

/// <summary>
/// SGEMM version 1: one thread per element of C, each reading a row of op(A) and a column of op(B)
/// straight from global memory. 2K loads per 2K flops: bandwidth-bound at a few percent of peak.
/// The definition every faster version is checked against, and the fallback for any shape.
/// Grid: (ceil(N / 16), ceil(M / 16), batch) groups of 16 x 16 threads; x runs along N so that a warp's
/// loads of B and stores of C are consecutive in memory.
/// </summary>
internal static class Sgemm1Naive
{
    public const int Block = 16;

    internal static void Kernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmArgs p)
    {
        int col = Grid.IdxX * Block + Group.IdxX;
        int row = Grid.IdxY * Block + Group.IdxY;
        int batch = Grid.IdxZ;
        if (row >= p.M || col >= p.N) return;
        var ab = a.SubView(batch * p.BatchStrideA);
        var bb = b.SubView(batch * p.BatchStrideB);
        var cb = c.SubView(batch * p.BatchStrideC);

        float sum = 0f;
        for (int k = 0; k < p.K; k++)
        {
            float av = p.TransA != 0 ? ab[k * p.Lda + row] : ab[row * p.Lda + k];
            float bv = p.TransB != 0 ? bb[col * p.Ldb + k] : bb[k * p.Ldb + col];
            sum += av * bv;
        }
        GemmEpilogue.StoreF32(cb, row, col, sum, bias, p);
    }

    public static void Launch(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, GemmArgs p, int batch = 1)
    {
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(Sgemm1Naive));
        if (p.M == 0 || p.N == 0) return;
        var spec = GemmLaunch.Spec("sgemm1", typeof(Sgemm1Naive));
        var grid = new Index3D(GemmLaunch.CeilDiv(p.N, Block), GemmLaunch.CeilDiv(p.M, Block), batch);
        KernelCache.For(accelerator).Launch(spec, new KernelConfig(grid, new Index3D(Block, Block, 1)), a, b, c, bias.OrDummy(accelerator), p);
    }
}
