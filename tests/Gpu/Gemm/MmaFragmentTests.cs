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
    /// <summary>Loads one stage (A 128 x 32, B 128 x 32 of op) with the kernel's copy code, runs two 16-deep steps of
    /// warp (0, 0) and writes its accumulators: output[((i * 4 + j) * 32 + lane) * 4 + e] = element e of tile (i, j).</summary>
    public static void WarpTile<TF, TA, TB>(ArrayView<ushort> a, ArrayView<ushort> b, ArrayView<float> output, GemmArgs p)
        where TF : struct, IHalfFormat where TA : struct, IOperandLayout where TB : struct, IOperandLayout
    {
        int lane = Group.IdxX;
        var smem = SharedMemory.Allocate<ushort>(HgemmMma.StageElems);
        for (int l = lane; l < 512; l += 32)
        {
            HgemmMma.CopyChunk<TA>(smem, a, 0, 0, false, 0, l, 0, 0, p.M, p.K, p.Lda);
            HgemmMma.CopyChunk<TB>(smem, b, 0, 0, false, HgemmMma.TileElems, l, 0, 0, p.N, p.K, p.Ldb);
        }
        Group.Barrier();
        var acc = default(HgemmMma.WarpAccumulators);
        acc = HgemmMma.WarpStep<TF, TA, TB>(smem, 0, 0, HgemmMma.TileElems, 0, 0, 0, lane, acc);
        Write(output, 0, lane, acc.C00); Write(output, 1, lane, acc.C01); Write(output, 2, lane, acc.C02); Write(output, 3, lane, acc.C03);
        Write(output, 4, lane, acc.C10); Write(output, 5, lane, acc.C11); Write(output, 6, lane, acc.C12); Write(output, 7, lane, acc.C13);
        Write(output, 8, lane, acc.C20); Write(output, 9, lane, acc.C21); Write(output, 10, lane, acc.C22); Write(output, 11, lane, acc.C23);
        Write(output, 12, lane, acc.C30); Write(output, 13, lane, acc.C31); Write(output, 14, lane, acc.C32); Write(output, 15, lane, acc.C33);
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
        // The warp's tile is 64 x 32 over K = 16; ragged sizes leave zero-filled rows, columns and k.
        var t = GemmCase.Random(61, 27, 13, transA, transB, seed: 21);
        ushort Encode(double v) => format == DType.BF16 ? BFloat16.FromFloat((float)v).Bits : BitConverter.HalfToUInt16Bits((System.Half)v);
        using var a = gpu.Upload(t.A.Select(Encode).ToArray());
        using var b = gpu.Upload(t.B.Select(Encode).ToArray());
        using var output = gpu.Zeros<float>(16 * 32 * 4);
        var kernel = gpu.Accelerator.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<float>, GemmArgs>(FragmentKernels.WarpTile<TF, TA, TB>);
        kernel(new KernelConfig(1, 32), a.View, b.View, output.View, t.Args);
        var actual = gpu.Download(output);
        var c = t.Expected(); // beta = 0: C[i, j] at i * Ldc + j
        for (int tile = 0; tile < 16; tile++)
        {
            for (int lane = 0; lane < 32; lane++)
            {
                int row = 16 * (tile / 4) + lane / 4, col = 8 * (tile % 4) + 2 * (lane % 4);
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
