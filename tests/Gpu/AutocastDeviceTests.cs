using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// Autocast on ILGPU's CPU accelerator against the CPU: a bf16 matmul (the GPU backend widens a 16-bit product the GEMM
/// kernels cannot take, as the CPU backend does), forward and the float32 gradients, at odd shapes. Attention under
/// autocast is the float32 kernel between roundings (casts), both already held to the CPU by the conformance tests.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class AutocastDeviceTests
{
    private static (double[] Y, double[] Da, double[] Db) MatMul(Device device, int[] aShape, int[] bShape, bool transposeB)
    {
        var a = TestUtil.RandomTensor(aShape, 1, DType.F32).To(device).Detach();
        var b = TestUtil.RandomTensor(bShape, 2, DType.F32).To(device).Detach();
        a.RequiresGrad = b.RequiresGrad = true;
        Tensor y;
        using (Autocast.Enable(DType.BF16)) y = a.MatMul(transposeB ? b.MT : b);
        Assert.Equal(DType.F32, y.DType);
        (y * TestUtil.RandomTensor(y.Shape, 3, DType.F32).To(device)).Sum().Backward();
        Assert.Equal(DType.F32, a.Grad!.DType);
        return (y.ToDoubleArray(), a.Grad.ToDoubleArray(), b.Grad!.ToDoubleArray());
    }

    [Theory]
    [InlineData(new[] { 3, 5 }, new[] { 5, 7 }, false)]
    [InlineData(new[] { 2, 3, 33 }, new[] { 17, 33 }, true)]   // batch broadcast over a transposed weight: a Linear's case
    [InlineData(new[] { 2, 1, 4, 9 }, new[] { 3, 9, 6 }, false)] // broadcast batch axes on both sides
    public void A_bf16_matmul_on_the_device_matches_the_cpu(int[] aShape, int[] bShape, bool transposeB)
    {
        var cpu = MatMul(Device.Cpu, aShape, bShape, transposeB);
        var dev = MatMul(Device.IlgpuCpu, aShape, bShape, transposeB);
        // The same bf16 operands, float32 sums in another order, one rounding to bf16: at most one bf16 step (2^-8) apart.
        TestUtil.AssertClose(cpu.Y, dev.Y, 8e-3, 1e-5, "y");
        TestUtil.AssertClose(cpu.Da, dev.Da, 8e-3, 1e-4, "da");
        TestUtil.AssertClose(cpu.Db, dev.Db, 8e-3, 1e-4, "db");
    }
}
