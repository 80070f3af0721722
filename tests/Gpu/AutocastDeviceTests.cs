using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// Autocast on ILGPU's CPU accelerator against the CPU: a bf16 matmul (the GPU backend widens a 16-bit product the GEMM
/// kernels cannot take, as the CPU backend does), forward and the float32 gradients, at odd shapes; attention, which
/// runs in bf16 on the device and through the float32 kernel between casts on the CPU.
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
        Assert.Equal(DType.BF16, y.DType);
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

    [Fact]
    public void Bf16_attention_on_the_device_runs_in_bf16_and_matches_the_cpus_float32_kernel_between_casts()
    {
        (double[] Y, double[] Dq, double[] Dk) Run(Device device)
        {
            var q = TestUtil.RandomTensor([1, 2, 5, 8], 4, DType.F32).To(device).Detach();
            var k = TestUtil.RandomTensor([1, 1, 5, 8], 5, DType.F32).To(device).Detach();
            var v = TestUtil.RandomTensor([1, 1, 5, 8], 6, DType.F32).To(device).Detach();
            q.RequiresGrad = k.RequiresGrad = v.RequiresGrad = true;
            Tensor y;
            using (Autocast.Enable(DType.BF16)) y = Tensor.Attention(q, k, v, causal: true);
            Assert.Equal(DType.BF16, y.DType);
            (y.To(DType.F32) * TestUtil.RandomTensor(y.Shape, 7, DType.F32).To(device)).Sum().Backward();
            Assert.Equal(DType.F32, q.Grad!.DType);
            return (y.ToDoubleArray(), q.Grad.ToDoubleArray(), k.Grad!.ToDoubleArray());
        }
        var cpu = Run(Device.Cpu);
        var dev = Run(Device.IlgpuCpu);
        // The same bf16 q, k, v; the device keeps its probabilities and gradients in bf16 between its float32 sums.
        TestUtil.AssertClose(cpu.Y, dev.Y, 8e-3, 1e-3, "y");
        TestUtil.AssertClose(cpu.Dq, dev.Dq, 3e-2, 3e-3, "dq");
        TestUtil.AssertClose(cpu.Dk, dev.Dk, 3e-2, 3e-3, "dk");
    }

    [Fact]
    public void Promotion_on_the_gpu_backend_matches_the_cpu()
    {
        (double[] Y, double[] Dh, double[] Dx) Run(Device device)
        {
            var h = TestUtil.RandomTensor([3, 5], 1, DType.BF16).To(device).Detach();
            var x = TestUtil.RandomTensor([5], 2, DType.F32).To(device).Detach();
            h.RequiresGrad = x.RequiresGrad = true;
            var y = (h + x) * h;
            Assert.Equal(DType.F32, y.DType);
            y.Sum().Backward();
            Assert.Equal(DType.BF16, h.Grad!.DType);
            return (y.ToDoubleArray(), h.Grad.ToDoubleArray(), x.Grad!.ToDoubleArray());
        }
        var cpu = Run(Device.Cpu);
        var dev = Run(Device.IlgpuCpu);
        TestUtil.AssertClose(cpu.Y, dev.Y, 1e-6, 1e-6, "y");
        TestUtil.AssertClose(cpu.Dh, dev.Dh, 1.0 / 128, 1e-6, "d h"); // one bf16 step: float32 sums in another order before the rounding
        TestUtil.AssertClose(cpu.Dx, dev.Dx, 1e-5, 1e-6, "d x");
    }
}
