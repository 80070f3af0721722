using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu.Kernels.Quant;
using Xunit;

namespace ManagedTensor.Tests.Gpu.Quant;

/// <summary>
/// The quantized kernels launched directly with a GPU's group sizes, which the backend's ilgpu-cpu device (64-thread
/// groups) never uses: the GEMV with 8 warps and several rows per warp (its prefetch crosses spans and rows), the
/// GEMM with 4 warps, two of them along M (128 x 64 blocks).
/// </summary>
public class QuantKernelGroupTests(GpuFixture gpu) : IClassFixture<GpuFixture>
{
    private static QMatMulArgs Args(Tensor w, int m, int warpsM = 1)
    {
        var f = ManagedTensor.Quant.BlockFormats.Get(w.DType);
        return new QMatMulArgs
        {
            M = m,
            N = w.Shape[0],
            K = w.Shape[1],
            RowBytes = (int)f.ByteCount(w.Shape[1]),
            WBytes = (int)f.ByteCount(w.Numel),
            WarpsM = warpsM,
        };
    }

    /// <summary>y = x W^T in float64 over x as given and W as the CPU decodes it, and sum |x w| per output.</summary>
    private static (double[] Y, double[] Scale) Reference(float[] x, Tensor w, int m)
    {
        int n = w.Shape[0], k = w.Shape[1];
        var ws = w.To(DType.F32).ToDoubleArray();
        double[] y = new double[m * n], scale = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                for (int t = 0; t < k; t++)
                {
                    y[i * n + j] += x[i * k + t] * ws[j * k + t];
                    scale[i * n + j] += Math.Abs(x[i * k + t] * ws[j * k + t]);
                }
        return (y, scale);
    }

    private static void AssertClose(float[] actual, (double[] Y, double[] Scale) expected, double relative, string what)
    {
        for (int i = 0; i < actual.Length; i++)
            Assert.True(Math.Abs(actual[i] - expected.Y[i]) <= relative * expected.Scale[i] + 1e-30, $"{what}: element {i}: {actual[i]}, expected {expected.Y[i]}");
    }

    [Fact]
    public void GemvWithEightWarpsAndSeveralRowsPerWarp()
    {
        // One group of 8 warps for 37 rows: 4 or 5 rows per warp, each row of a 2048-wide Q4_0 weight two spans.
        var w = QuantKernelTests.Weights(DType.Q4_0, 37, 2048, 21);
        int m = 3;
        var x = TestUtil.RandomValues(m * 2048, 22).Select(v => (float)v).ToArray();
        using var dx = gpu.Upload(x);
        using var dw = gpu.Upload(w.ToBlockBytes());
        using var dy = gpu.Zeros<float>(m * 37);
        var kernel = gpu.Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<byte>, ArrayView<float>, QMatMulArgs>(
            QGemvKernels.Kernel<float, F32Activation, Q4_0Blocks>);
        kernel(new KernelConfig(1, 256), dx.View, dw.View, dy.View, Args(w, m));
        AssertClose(gpu.Download(dy), Reference(x, w, m), 1e-6, "GEMV, 8 warps");
    }

    [Fact]
    public void GemmWithFourWarpsTwoAlongM()
    {
        // 150 x 75 outputs in blocks of 128 x 64: a 2 x 2 grid with ragged edges in both directions.
        var w = QuantKernelTests.Weights(DType.Q8_0, 75, 96, 23);
        int m = 150;
        var x = TestUtil.RandomValues(m * 96, 24).Select(v => (float)v).ToArray();
        using var dx = gpu.Upload(x);
        using var dw = gpu.Upload(w.ToBlockBytes());
        using var dy = gpu.Zeros<float>(m * 75);
        var kernel = gpu.Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, QMatMulArgs>(
            QGemmMmaKernels.Kernel<float, F32Activation, Q8_0Blocks, ReferencePath>);
        kernel(new KernelConfig(new Index2D(2, 2), new Index2D(128, 1)), dx.View, dw.View.AsContiguous().Cast<ushort>(), dy.View, Args(w, m, warpsM: 2));
        AssertClose(gpu.Download(dy), Reference(x, w, m), 8e-3, "GEMM, 2 x 2 warps");
    }

    [Fact]
    public void GemmFragmentsMatchTheirLayout()
    {
        // The tensor-core path's ldmatrix addressing and mma fragments, emulated lane by lane with shuffles on one block
        // of 2 warps (64 x 64 outputs, of which 40 x 30 are inside y), two 32-deep steps, f16 operands from F16 activations.
        var w = QuantKernelTests.Weights(DType.Q4_0, 30, 64, 25);
        int m = 40;
        var xh = TestUtil.RandomValues(m * 64, 26).Select(v => (System.Half)v).ToArray();
        using var dx = gpu.Upload(xh.Select(h => BitConverter.HalfToUInt16Bits(h)).ToArray());
        using var dw = gpu.Upload(w.ToBlockBytes());
        using var dy = gpu.Zeros<ushort>(m * 30);
        var kernel = gpu.Accelerator.LoadStreamKernel<ArrayView<ushort>, ArrayView<ushort>, ArrayView<ushort>, QMatMulArgs>(
            QGemmMmaKernels.Kernel<ushort, F16Activation, Q4_0Blocks, EmulatedFragmentPath>);
        kernel(new KernelConfig(new Index2D(1, 1), new Index2D(64, 1)), dx.View, dw.View.AsContiguous().Cast<ushort>(), dy.View, Args(w, m));
        var actual = gpu.Download(dy).Select(u => (float)BitConverter.UInt16BitsToHalf(u)).ToArray();
        // W decoded to f16 (2^-11) and the result rounded to f16 (2^-11 of |y| <= sum |x w|).
        AssertClose(actual, Reference(xh.Select(v => (float)v).ToArray(), w, m), 2e-3, "GEMM fragments, emulated");
    }
}
