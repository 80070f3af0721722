using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Gemm;
using Xunit;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>One warp runs HgemmMma's tensor-core step (its ldmatrix addressing, fragment packing and mma
/// order) with ldmatrix and mma emulated lane by lane: the part the CPU-accelerator path of the full kernel skips.</summary>
internal static class FragmentKernels
{
    /// <summary>Loads the first stage (A 128 x 32, B 128 x 32 of op, tile 0 of the K loop with its K shift) with the kernel's
    /// copy code for all 128 threads' chunks, runs both 16-deep steps of warp (0, 0) and writes its accumulators:
    /// output[((i * 8 + j) * 32 + lane) * 4 + e] = element e of mma tile (i, j) of the warp's 64 x 64 tile.</summary>
    public static void WarpTile<TF, TA, TB>(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> output, GemmArgs p)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int lane = Group.IdxX;
        var smem = SharedMemory.Allocate<ushort>(HgemmMma.StageBytes / 2);
        int shift = ((p.K + HgemmMma.BK - 1) / HgemmMma.BK) * HgemmMma.BK - p.K;
        for (int tid = lane; tid < HgemmMma.Threads; tid += 32)
        {
            HgemmMma.TileCopy.Create<TA>(tid, 0, p.M, shift, p.Lda, 0, 0).Issue<TA, CpuReference>(smem, 0, a, 0, 0, firstTile: true);
            HgemmMma.TileCopy.Create<TB>(tid, 0, p.N, shift, p.Ldb, 0, HgemmMma.TileBytes).Issue<TB, CpuReference>(smem, 0, b, 0, 0, firstTile: true);
        }
        Group.Barrier();
        var fa = HgemmMma.FragmentRows.ForA<TA>(0, lane);
        var fb = HgemmMma.FragmentRows.ForB<TB>(0, lane);
        var acc = default(HgemmMma.WarpAccumulators);
        acc = HgemmMma.WarpStep<TF, TA, TB, EmulatedFragments<TF>>(smem, 0, 0u, fa, fb, 0, acc);
        acc = HgemmMma.WarpStep<TF, TA, TB, EmulatedFragments<TF>>(smem, 0, 0u, fa, fb, 1, acc);
        WriteRow(output, 0, lane, acc.R0);
        WriteRow(output, 1, lane, acc.R1);
        WriteRow(output, 2, lane, acc.R2);
        WriteRow(output, 3, lane, acc.R3);
    }

    private static void WriteRow(ArrayView<float> output, int i, int lane, HgemmMma.Row8 r)
    {
        Write(output, i * 8 + 0, lane, r.C0); Write(output, i * 8 + 1, lane, r.C1); Write(output, i * 8 + 2, lane, r.C2); Write(output, i * 8 + 3, lane, r.C3);
        Write(output, i * 8 + 4, lane, r.C4); Write(output, i * 8 + 5, lane, r.C5); Write(output, i * 8 + 6, lane, r.C6); Write(output, i * 8 + 7, lane, r.C7);
    }

    private static void Write(ArrayView<float> output, int tile, int lane, Float4 v)
    {
        int o = (tile * 32 + lane) * 4;
        output[o] = v.X;
        output[o + 1] = v.Y;
        output[o + 2] = v.Z;
        output[o + 3] = v.W;
    }
}

public class MmaFragmentTests(GpuFixture gpu) : IClassFixture<GpuFixture>
{
    private void Run<TF, TA, TB>(bool transA, bool transB, DType format)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        // The warp's tile is 64 x 64 over K = 32; ragged sizes leave zero-filled rows, columns and k (K = 13 puts the
        // tile's first 19 k below 0: the K shift the kernel applies to its first tile).
        var t = GemmCase.Random(61, 27, 13, transA, transB, seed: 21);
        ushort Encode(double v) => format == DType.BF16 ? BFloat16.FromFloat((float)v).Bits : BitConverter.HalfToUInt16Bits((System.Half)v);
        using var a = gpu.Upload(t.A.Select(Encode).ToArray());
        using var b = gpu.Upload(t.B.Select(Encode).ToArray());
        using var output = gpu.Zeros<float>(32 * 32 * 4);
        var kernel = gpu.Accelerator.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, GemmArgs>(FragmentKernels.WarpTile<TF, TA, TB>);
        kernel(new KernelConfig(1, 32), a.View, b.View, output.View, t.Args);
        var actual = gpu.Download(output);
        var c = t.Expected(); // beta = 0: C[i, j] at i * Ldc + j
        for (int tile = 0; tile < 32; tile++)
        {
            for (int lane = 0; lane < 32; lane++)
            {
                int row = 16 * (tile / 8) + lane / 4, col = 8 * (tile % 8) + 2 * (lane % 4);
                for (int e = 0; e < 4; e++)
                {
                    int r = row + (e >= 2 ? 8 : 0), q = col + e % 2;
                    double expected = r < t.Args.M && q < t.Args.N ? c[r * t.Args.Ldc + q] : 0;
                    Assert.True(expected == actual[(tile * 32 + lane) * 4 + e],
                        $"{format} {(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')}: tile {tile} lane {lane} element {e} (C[{r}, {q}]) is {actual[(tile * 32 + lane) * 4 + e]}, expected {expected}");
                }
            }
        }
    }

    [Fact]
    public void LdmatrixAndMmaFragmentsGiveTheWarpTileForEveryLayout()
    {
        // NN reads A with ldmatrix and B with ldmatrix.trans; TT the other way round: together every fragment path.
        // (Each emulated mma is 32 shuffles, each a barrier of 32 OS threads on the CPU accelerator: kept to two runs.)
        Run<BF16AsFloat, KInner, MnInner>(false, false, DType.BF16);
        Run<F16AsFloat, MnInner, KInner>(true, true, DType.F16);
    }
}
