using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Gpu;

/// <summary>
/// The mixture-of-experts combine kernel (src/Engine/Gpu/Kernels/MoeKernels.cs) on ILGPU's CPU accelerator against
/// the CPU kernel: y and the gradients of the expert rows and the gates (repeated slots included), I32 and I64 slots,
/// F32 and F64; a slot outside the expert rows is reported with the op's name.
/// </summary>
[Collection(IlgpuCpuCollection.Name)]
public class MoeKernelTests
{
    [Theory]
    [InlineData(DType.F32, DType.I32)]
    [InlineData(DType.F64, DType.I64)]
    public void Combine_kernel_matches_the_cpu_in_values_and_gradients(DType t, DType idx)
    {
        int tokens = 7, k = 3, rows = 5, c = 9;
        var expertOut = RandomTensor([rows, c], 1, t);
        var slot = Tensor.FromArray(Enumerable.Range(0, tokens * k).Select(i => (long)(i * 7 % rows)).ToArray(), [tokens, k]).To(idx);
        var gate = (RandomTensor([tokens, k], 2) * 0.5).AddScalar(0.5).To(t);
        var weight = RandomTensor([tokens, c], 3, t);
        (Tensor Y, Tensor GRows, Tensor GGate) Run(Device device)
        {
            var r = expertOut.To(device).Detach();
            var g = gate.To(device).Detach();
            r.RequiresGrad = g.RequiresGrad = true;
            Assert.True(Tensor.HasKernel(MoeOps.MoeCombine, device, null, r, slot.To(device), g), $"MoeCombine runs its fallback on {device}");
            var y = r.MoeCombine(slot.To(device), g);
            (y * weight.To(device)).Sum().Backward();
            return (y.To(Device.Cpu), r.Grad!.To(Device.Cpu), g.Grad!.To(Device.Cpu));
        }
        var cpu = Run(Device.Cpu);
        var gpu = Run(Device.IlgpuCpu);
        double rtol = t == DType.F32 ? 1e-5 : 1e-12, atol = t == DType.F32 ? 1e-6 : 1e-13;
        AssertClose(cpu.Y, gpu.Y, rtol, atol, "y");
        AssertClose(cpu.GRows, gpu.GRows, rtol, atol, "grad expert_out");
        AssertClose(cpu.GGate, gpu.GGate, rtol, atol, "grad gate");
    }

    [Fact]
    public void A_slot_outside_the_expert_rows_is_reported()
    {
        var rows = Tensor.Zeros([4, 3], DType.F32, Device.IlgpuCpu);
        var slot = Tensor.FromArray(new long[] { 0, 9 }, [1, 2]).To(Device.IlgpuCpu);
        var gate = Tensor.Zeros([1, 2], DType.F32, Device.IlgpuCpu);
        var e = Assert.Throws<IndexOutOfRangeException>(() => rows.MoeCombine(slot, gate).ToArray<float>());
        Assert.Contains("MoeCombine: index 9", e.Message);
        Assert.Contains("size 4", e.Message);
    }
}
