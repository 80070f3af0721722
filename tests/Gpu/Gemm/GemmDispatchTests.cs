using ManagedTensor.Gpu.Gemm;
using Xunit;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>
/// Op.MatMul on the ilgpu-cpu backend through GemmDispatch, against the CPU backend. The GEMM kernels need
/// 256-thread groups; while the backend's CPU accelerator is shaped smaller (GpuDevices.CpuAcceleratorShape)
/// the dispatch must decline and the backend's tiled kernel answer, with the same results.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class GemmDispatchTests
{
    private static Tensor Values(int[] shape, int seed, DType dtype)
    {
        var rng = new Random(seed);
        int n = shape.Aggregate(1, (a, b) => a * b);
        return Tensor.FromArray(Enumerable.Range(0, n).Select(_ => rng.Next(-64, 65) / 64f).ToArray(), shape).To(dtype);
    }

    [Fact]
    public void TensorMatMulUsesTheSelectedKernels()
    {
        var d = Device.IlgpuCpu;
        using var scope = DeviceMemory.Scope(); // frees every device tensor made here (leaks would upset the memory tests of this collection)
        bool gemm = ((ManagedTensor.Gpu.GpuBackend)Backends.For(d)).Accelerator.MaxNumThreadsPerGroup >= 256;
        GemmKernel? Used(GemmKernel k) => gemm ? k : null;
        // (batch, M, K) @ (K, N)^T as a Linear layer does it, K and N multiples of 4: float4-aligned.
        var x = Values([2, 9, 12], 1, DType.F32);
        var w = Values([20, 12], 2, DType.F32);
        var expected = x.MatMul(w.MT).ToDoubleArray();
        GemmDispatch.LastKernel = null;
        var y = x.To(d).MatMul(w.To(d).MT);
        Assert.Equal(gemm, GemmDispatch.LastKernel is not null);
        Assert.Equal(expected, y.ToDoubleArray()); // exact: multiples of 1/64 summed in float32

        // Ragged and transposed on the left (dW = dy^T x): the unaligned fallback, version 3.
        var dy = Values([7, 5], 3, DType.F32);
        var xs = Values([7, 3], 4, DType.F32);
        GemmDispatch.LastKernel = null;
        var dw = dy.To(d).MT.MatMul(xs.To(d));
        Assert.Equal(Used(GemmKernel.Sgemm3RegisterBlocked), GemmDispatch.LastKernel);
        Assert.Equal(dy.MT.MatMul(xs).ToDoubleArray(), dw.ToDoubleArray());

        // bf16 on the tensor-core kernel; the CPU reference also accumulates in float32 and rounds once.
        var a = Values([2, 5, 9], 5, DType.BF16);
        var b = Values([9, 6], 6, DType.BF16);
        if (!gemm) return; // the tiled fallback has no bf16 kernel
        var c = a.To(d).MatMul(b.To(d));
        Assert.Equal(GemmKernel.HgemmMma, GemmDispatch.LastKernel);
        Assert.Equal(DType.BF16, c.DType);
        Assert.Equal(a.MatMul(b).ToDoubleArray(), c.ToDoubleArray());
    }
}
