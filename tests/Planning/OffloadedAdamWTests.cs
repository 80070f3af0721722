using ManagedTensor.Optim;
using Xunit;

namespace ManagedTensor.Tests.Planning;

/// <summary>
/// <see cref="OffloadedAdamW"/>: with float32 moments it is AdamW exactly (the same fused op, run on the host), on the CPU
/// and on ilgpu-cpu, where the device then holds no optimizer state; with bitsandbytes' 8-bit moments it tracks AdamW on a
/// small least-squares problem; the 8-bit maps and block codes are bitsandbytes'.
/// </summary>
public class OffloadedAdamWTests
{
    /// <summary>Least squares: W (out, in) fit to targets of a fixed W*; a bias too, so a tensor below the 8-bit size takes float moments.</summary>
    internal static (Tensor W, Tensor B, Func<Tensor> Loss) Problem(Device d, int rows = 64, int cols = 96)
    {
        var g = new Generator(11);
        var x = Tensor.Randn([32, cols], g).To(d);
        var target = x.MatMul(Tensor.Randn([cols, rows], g, 0, 0.3).To(d));
        var w = Tensor.Randn([rows, cols], g, 0, 0.1).To(d);
        var b = Tensor.Zeros([rows], DType.F32, d);
        w.RequiresGrad = true;
        b.RequiresGrad = true;
        return (w, b, () => (x.MatMul(w.MT) + b - target).Square().Mean());
    }

    private static double[] Train(IOptimizer opt, Func<Tensor> loss, int steps)
    {
        var losses = new double[steps];
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            var l = loss();
            l.Backward();
            opt.Step();
            losses[s] = l.Item();
        }
        return losses;
    }

    [Fact]
    public void Float32_moments_on_the_host_are_adamw_exactly()
    {
        var (w1, b1, loss1) = Problem(Device.Cpu);
        var (w2, b2, loss2) = Problem(Device.Cpu);
        Train(new AdamW([("w", w1), ("b", b1)], 0.02, weightDecay: 0.1), loss1, 5);
        Train(new OffloadedAdamW([("w", w2), ("b", b2)], 0.02, weightDecay: 0.1), loss2, 5);
        Assert.Equal(w1.ToArray<float>(), w2.ToArray<float>());
        Assert.Equal(b1.ToArray<float>(), b2.ToArray<float>());
    }

    [Fact]
    public void Eight_bit_moments_track_adamw()
    {
        var (w1, b1, loss1) = Problem(Device.Cpu);
        var (w2, b2, loss2) = Problem(Device.Cpu);
        var full = Train(new AdamW([("w", w1), ("b", b1)], 0.01, weightDecay: 0), loss1, 40);
        var opt = new OffloadedAdamW([("w", w2), ("b", b2)], 0.01, weightDecay: 0, eightBit: true);
        var eight = Train(opt, loss2, 40);
        Assert.True(eight[^1] < eight[0] * 0.2, $"8-bit AdamW did not train: {eight[0]} -> {eight[^1]}");
        Assert.InRange(eight[^1], full[^1] * 0.8, full[^1] * 1.25);
        // The weights moved like AdamW's: the 8-bit run's change is close to the float run's.
        var (w0, _, _) = Problem(Device.Cpu);
        var d1 = (w1 - w0).ToArray<float>();
        var d2 = (w2 - w0).ToArray<float>();
        double dot = 0, n1 = 0, n2 = 0;
        for (int i = 0; i < d1.Length; i++) { dot += d1[i] * d2[i]; n1 += d1[i] * d1[i]; n2 += d2[i] * d2[i]; }
        Assert.True(dot / Math.Sqrt(n1 * n2) > 0.98, $"cosine of the updates {dot / Math.Sqrt(n1 * n2)}");
        // 64 x 96 values in 8 bits (+ 3 block scales each), the 64-value bias in float32: about a quarter of AdamW's 8 bytes per value.
        Assert.Equal(2 * (64 * 96 + 3 * 4) + 64 * 8, opt.StateBytes);
    }

    [Fact]
    public void The_dynamic_maps_are_bitsandbytes()
    {
        Assert.Equal(256, Blockwise8Bit.SignedMap.Length);
        Assert.Equal(256, Blockwise8Bit.UnsignedMap.Length);
        Assert.Equal(1f, Blockwise8Bit.SignedMap[^1]);
        Assert.Equal(0f, Blockwise8Bit.UnsignedMap[0]);
        Assert.All(Blockwise8Bit.UnsignedMap, v => Assert.True(v >= 0));
        // the smallest magnitudes are 1e-6 x the midpoint of [0.1, 1] (signed: one value per sign) and x the first of two (unsigned)
        Assert.Equal(-0.99296875f, Blockwise8Bit.SignedMap[0], 1e-6f);
        Assert.Equal(5.5e-7f, Blockwise8Bit.SignedMap.Where(v => v > 0).Min(), 1e-12f);
        Assert.Equal(3.25e-7f, Blockwise8Bit.UnsignedMap.Where(v => v > 0).Min(), 1e-12f);
        // a round trip keeps large values within a few percent and small ones within a fraction of a percent of the block's maximum
        var values = Enumerable.Range(0, 3000).Select(i => (float)(Math.Sin(i) * Math.Pow(10, -(i % 5)))).ToArray();
        var codes = new byte[values.Length];
        var scale = new float[2];
        Blockwise8Bit.Quantize(values, Blockwise8Bit.SignedMap, codes, scale);
        var back = new float[values.Length];
        Blockwise8Bit.Dequantize(codes, scale, Blockwise8Bit.SignedMap, back);
        for (int i = 0; i < values.Length; i++)
            Assert.True(Math.Abs(back[i] - values[i]) <= 0.08 * Math.Abs(values[i]) + 0.002 * scale[i / 2048], $"value {i}: {values[i]} -> {back[i]}");
    }
}

/// <summary>On ilgpu-cpu: the moments stay on the host (the device's optimizer-state category stays empty) and the result is AdamW's.</summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class OffloadedAdamWDeviceTests
{
    [Fact]
    public void Offloaded_moments_leave_the_device_and_give_adamw()
    {
        var d = Device.IlgpuCpu;
        var (w1, b1, loss1) = OffloadedAdamWTests.Problem(d, 16, 24);
        var (w2, b2, loss2) = OffloadedAdamWTests.Problem(d, 16, 24);
        var onDevice = new AdamW([("w", w1), ("b", b1)], 0.02);
        long before = DeviceMemory.Stats(d)!.LiveByCategory[MemoryCategory.OptimizerState];
        OffloadedAdamW offloaded;
        using (DeviceMemory.Category(MemoryCategory.OptimizerState)) offloaded = new OffloadedAdamW([("w", w2), ("b", b2)], 0.02);
        Assert.Equal(before, DeviceMemory.Stats(d)!.LiveByCategory[MemoryCategory.OptimizerState]);
        for (int s = 0; s < 4; s++)
        {
            foreach (var (opt, loss) in new (IOptimizer, Func<Tensor>)[] { (onDevice, loss1), (offloaded, loss2) })
            {
                opt.ZeroGrad();
                loss().Backward();
                opt.Step();
            }
        }
        Assert.Equal(d, w2.Device);
        TestUtil.AssertClose(w1.To(Device.Cpu), w2.To(Device.Cpu), rtol: 1e-5, atol: 1e-6, what: "weights after 4 steps");
        TestUtil.AssertClose(b1.To(Device.Cpu), b2.To(Device.Cpu), rtol: 1e-5, atol: 1e-6, what: "bias after 4 steps");
        Assert.Equal(16 * 24 * 8 + 16 * 8, offloaded.StateBytes);
    }
}
