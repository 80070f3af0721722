using ILGPU;
using ILGPU.Runtime;

using ManagedTensor.Gpu.Gemm;

namespace ManagedTensor.Gpu.Bench.SgemmLadder;

/// <summary>
/// SGEMM version 4: 128 x 128 blocks, 8 x 8 outputs per thread, 16-byte global loads.
/// Twice the tile of version 3 in each direction halves the global traffic per flop again; each thread
/// now keeps 64 accumulators (four <see cref="Tile4x4"/>) and does 64 FMAs per four 16-byte shared reads.
/// Global memory is read as float4 along each operand's contiguous axis (ld.global.v4.f32): a k-contiguous
/// tile is transposed into shared memory with four scalar stores, an mn-contiguous one is stored as is.
/// Requires every float4 to be 16-byte aligned: leading dimensions, batch strides and view offsets that
/// are multiples of 4 (<see cref="CanRun"/>). Loads that straddle the matrix edge fall back to scalars.
/// Left for version 5: the 16 threads of a row read B 32 bytes apart (2-way bank conflicts), and loads
/// are not overlapped with the math.
/// </summary>
internal static class Sgemm4Vectorized
{
    public const int BM = 128, BN = 128, BK = 8, Threads = 256;

    internal static void Kernel<TA, TB>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmArgs p)
        where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int tid = Group.IdxX;
        int n0 = Grid.IdxX * BN, m0 = Grid.IdxY * BM, batch = Grid.IdxZ;
        var ab = a.SubView(batch * p.BatchStrideA).AsAligned(16);
        var bb = b.SubView(batch * p.BatchStrideB).AsAligned(16);
        var cb = c.SubView(batch * p.BatchStrideC).AsAligned(16);
        var aTile = SharedMemory.Allocate<float>(BK * BM);
        var bTile = SharedMemory.Allocate<float>(BK * BN);
        var aTile4 = aTile.Cast<Float4>();
        var bTile4 = bTile.Cast<Float4>();
        int tx = tid % 16, ty = tid / 16; // C rows m0 + 8 ty + 0..7, columns n0 + 8 tx + 0..7

        Tile4x4 c00 = default, c01 = default, c10 = default, c11 = default;
        for (int k0 = 0; k0 < p.K; k0 += BK)
        {
            // 128 x 8 = 256 float4 per operand: one each.
            var va = VectorTiles.Load<TA>(ab, tid, m0, k0, p.M, p.K, p.Lda, BM, BK);
            var vb = VectorTiles.Load<TB>(bb, tid, n0, k0, p.N, p.K, p.Ldb, BN, BK);
            VectorTiles.Store<TA>(aTile, aTile4, va, tid, BM, BK);
            VectorTiles.Store<TB>(bTile, bTile4, vb, tid, BN, BK);
            Group.Barrier();
            for (int k = 0; k < BK; k++)
            {
                var a0 = aTile4[k * (BM / 4) + 2 * ty];
                var a1 = aTile4[k * (BM / 4) + 2 * ty + 1];
                var b0 = bTile4[k * (BN / 4) + 2 * tx];
                var b1 = bTile4[k * (BN / 4) + 2 * tx + 1];
                c00 = Tile4x4.Fma(c00, a0, b0);
                c01 = Tile4x4.Fma(c01, a0, b1);
                c10 = Tile4x4.Fma(c10, a1, b0);
                c11 = Tile4x4.Fma(c11, a1, b1);
            }
            Group.Barrier();
        }
        bool vector = p.Ldc % 4 == 0;
        int row = m0 + 8 * ty, col = n0 + 8 * tx;
        c00.Store(cb, row, col, bias, p, vector);
        c01.Store(cb, row, col + 4, bias, p, vector);
        c10.Store(cb, row + 4, col, bias, p, vector);
        c11.Store(cb, row + 4, col + 4, bias, p, vector);
    }

    /// <summary>Whether the float4 loads are aligned: leading dimensions, batch strides and view offsets all multiples of 4 floats.</summary>
    public static bool CanRun(in GemmArgs p, long aOffset, long bOffset, long cOffset) => VectorTiles.CanRun(p, aOffset, bOffset, cOffset);

    public static void Launch(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, GemmArgs p, int batch = 1)
    {
        p.Validate(a.Length, b.Length, c.Length, bias.Length, batch, nameof(Sgemm4Vectorized));
        VectorTiles.CheckAligned(p, a, b, c, nameof(Sgemm4Vectorized));
        if (p.M == 0 || p.N == 0) return;
        var (aK, bK) = OperandLayout.Of(p);
        var spec = GemmLaunch.Spec($"sgemm4_{(aK ? 'N' : 'T')}{(bK ? 'T' : 'N')}", typeof(Sgemm4Vectorized), GemmLaunch.Layout(aK), GemmLaunch.Layout(bK));
        var grid = new Index3D(GemmLaunch.CeilDiv(p.N, BN), GemmLaunch.CeilDiv(p.M, BM), batch);
        KernelCache.For(accelerator).Launch(spec, new KernelConfig(grid, new Index3D(Threads, 1, 1)), a, b, c, bias.OrDummy(accelerator), p);
    }
}
