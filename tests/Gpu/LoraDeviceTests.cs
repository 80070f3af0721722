using ManagedTensor.Nn;
using Xunit;

namespace ManagedTensor.Tests.Gpu;

/// <summary>LoRA and QLoRA (NF4 base through QMatMul) on ILGPU's CPU accelerator against the CPU: outputs and the adapters' gradients.</summary>
[Collection(IlgpuCpuCollection.Name)]
public class LoraDeviceTests
{
    private static (double[] Y, double[] Dx, double[] DA, double[] DB) Run(Device device, DType? format)
    {
        var w = TestUtil.RandomTensor([5, 64], 3, DType.F32).To(device);
        var layer = new Linear(format is { } f ? w.To(f) : w);
        layer.Weight.RequiresGrad = false;
        layer.AddLora(3, alpha: 6, dropout: 0, new Generator(5), new Generator(6));
        using (GradMode.NoGrad()) layer.LoraB!.Weight.CopyFrom_(TestUtil.RandomTensor([5, 3], 7, DType.F32).To(device));
        var x = TestUtil.RandomTensor([3, 64], 12, DType.F32).To(device).Detach();
        x.RequiresGrad = true;
        var y = layer.Forward(x);
        (y * TestUtil.RandomTensor([3, 5], 11, DType.F32).To(device)).Sum().Backward();
        return (y.ToDoubleArray(), x.Grad!.ToDoubleArray(), layer.LoraA!.Weight.Grad!.ToDoubleArray(), layer.LoraB.Weight.Grad!.ToDoubleArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Lora_on_the_device_matches_the_cpu(bool nf4)
    {
        DType? format = nf4 ? DType.NF4 : null;
        var cpu = Run(Device.Cpu, format);
        var dev = Run(Device.IlgpuCpu, format);
        TestUtil.AssertClose(cpu.Y, dev.Y, 1e-4, 1e-5, "y");
        TestUtil.AssertClose(cpu.Dx, dev.Dx, 1e-4, 1e-5, "dx");
        TestUtil.AssertClose(cpu.DA, dev.DA, 1e-4, 1e-5, "dA");
        TestUtil.AssertClose(cpu.DB, dev.DB, 1e-4, 1e-5, "dB");
    }
}
