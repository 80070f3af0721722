using ManagedTensor.Quant;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>Block-format tensors: casts (encode/decode), storage and views, QMatMul forward/backward and its errors.</summary>
public class QuantTensorTests
{
    public static TheoryData<DType> Formats() => [DType.Q8_0, DType.Q4_0, DType.Q4_K, DType.Q5_0, DType.Q5_1, DType.Q5_K, DType.Q6_K, DType.NF4, DType.TQ2_0];

    private static Tensor Weights(int rows, int cols, int seed) => RandomTensor([rows, cols], seed, DType.F32);

    [Theory, MemberData(nameof(Formats))]
    public void ACastDecodesWhatTheFormatEncodes(DType format)
    {
        var f = BlockFormats.Get(format);
        var w = Weights(3, 2 * f.BlockSize, 1);
        if (f.Encode is null) return;
        var q = w.To(format);
        Assert.Equal(format, q.DType);
        Assert.Equal(3 * f.ByteCount(2 * f.BlockSize), q.ToBlockBytes().Length);
        var back = q.To(DType.F32);
        var expected = new float[w.Numel];
        f.Decode(q.ToBlockBytes(), expected);
        Assert.Equal(expected, back.ToArray<float>());
        // Quantization error is bounded by the block scale: a few percent of the largest value for 4 bits.
        // (TQ2_0 keeps three levels: only exact on ternary weights.)
        if (format != DType.TQ2_0) AssertClose(w, back, 0, format == DType.Q8_0 ? 0.01 : 0.15, "round trip");
    }

    [Fact]
    public void BlockTensorsMoveBetweenDevicesAndRowViewsKeepTheirBlocks()
    {
        var w = Weights(4, 64, 2).To(DType.Q4_0);
        var rows = w.Narrow(0, 1, 2);
        Assert.Equal(w.To(DType.F32).Narrow(0, 1, 2).ToArray<float>(), rows.To(DType.F32).ToArray<float>());
        Assert.Equal(rows.ToBlockBytes(), rows.Contiguous().ToBlockBytes());
        var copy = Tensor.FromBlocks(w.ToBlockBytes(), [4, 64], DType.Q4_0);
        Assert.Equal(w.ToBlockBytes(), copy.ToBlockBytes());
    }

    [Fact]
    public void ABlockTensorsLastAxisIsWholeBlocks()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Empty([2, 33], DType.Q8_0));
        Assert.Contains("[2, 33]", e.Message);
        Assert.Contains("blocks of 32", e.Message);
    }

    [Fact]
    public void ByteLengthMustMatchShapeAndFormat()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.FromBlocks(new byte[35], [1, 32], DType.Q8_0, name: "blk.0.attn_q.weight"));
        Assert.Contains("blk.0.attn_q.weight", e.Message);
        Assert.Contains("35 bytes", e.Message);
        Assert.Contains("34", e.Message);
    }

    [Fact]
    public void BlockFormatsAreNotElementwise()
    {
        var q = Weights(1, 32, 3).To(DType.Q8_0);
        Assert.Throws<ArgumentException>(() => q.Size(0).ToString() + q.DType.SizeOf());
        Assert.False(q.DType.IsFloat());
        Assert.False(q.DType.IsInteger());
    }

    [Theory, MemberData(nameof(Formats))]
    public void QMatMulEqualsMatMulWithTheDecodedWeight(DType format)
    {
        var f = BlockFormats.Get(format);
        if (f.Encode is null) return;
        int n = 37, k = 2 * f.BlockSize;
        var w = Weights(n, k, 4).To(format);
        var wf = w.To(DType.F32);
        foreach (int m in new[] { 1, 5, ManagedTensor.Cpu.CpuQuant.GemmRows + 3 }) // integer dots; decoded tiles into the SGEMM
        {
            var x = RandomTensor([m, k], 5 + m, DType.F32);
            var y = x.QMatMul(w);
            Assert.Equal([m, n], y.Shape);
            var reference = x.MatMul(wf.MT);
            // Formats with an integer dot product also round the activations to 8 bits: ~1% of |x||w| for Q8_0's
            // blocks of 32, more for Q8_K's blocks of 256 (one scale for 8x as many values); NF4's activations stay float.
            double atol = m >= ManagedTensor.Cpu.CpuQuant.GemmRows ? 1e-4 : f.DotType switch { DType.Q8_K => 0.15, DType.Q8_0 => 0.05, _ => 1e-4 };
            AssertClose(reference, y, 2e-2, atol, $"{format} M={m}");
        }
    }

    [Fact]
    public void QMatMulTakesLeadingAxesAndHalfActivations()
    {
        var w = Weights(6, 32, 6).To(DType.Q8_0);
        var x = RandomTensor([2, 3, 32], 7, DType.F32);
        var y = x.QMatMul(w);
        Assert.Equal([2, 3, 6], y.Shape);
        var y16 = x.To(DType.BF16).QMatMul(w); // no BF16 kernel on the CPU: through F32 (the op's fallback)
        Assert.Equal(DType.BF16, y16.DType);
        AssertClose(y, y16.To(DType.F32), 3e-2, 3e-2, "bf16");
    }

    [Fact]
    public void QMatMulGradientIsDecodedWeightTimesGradient()
    {
        // dL/dx = g W for y = x W^T; checked against finite differences through the decoded weight's MatMul.
        var w = Weights(5, 32, 8).To(DType.Q8_0);
        var wf = w.To(DType.F64);
        var x = RandomTensor([3, 32], 9, DType.F32);
        x.RequiresGrad = true;
        var g = RandomTensor([3, 5], 10, DType.F32);
        (x.QMatMul(w) * g).Sum().Backward();
        var expected = g.To(DType.F64).MatMul(wf);
        AssertClose(expected, x.Grad!.To(DType.F64), 1e-5, 1e-5, "dx");
        Assert.False(w.RequiresGrad);
    }

    [Fact]
    public void QMatMulErrorsNameTheTensorsAndSizes()
    {
        var w = Weights(4, 64, 11).To(DType.Q4_0);
        w.Name = "layers.0.wq";
        var e = Assert.Throws<ArgumentException>(() => RandomTensor([2, 32], 12, DType.F32).QMatMul(w));
        Assert.Contains("layers.0.wq", e.Message);
        Assert.Contains("32", e.Message);
        Assert.Contains("64", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => RandomTensor([2, 64], 13, DType.F32).QMatMul(RandomTensor([4, 64], 14, DType.F32)));
        Assert.Contains("block format", e2.Message);
    }
}

/// <summary>QMatMul on the GPU backend (ILGPU's CPU accelerator), which shares one device with the other GPU test classes; tests/Gpu/Quant has the kernels' own tests.</summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class QuantTensorGpuTests
{
    [Fact]
    public void QMatMulRunsOnTheGpuBackend()
    {
        var w = RandomTensor([9, 64], 15, DType.F32).To(DType.Q4_0);
        var x = RandomTensor([3, 64], 16, DType.F32);
        var expected = x.QMatMul(w);
        var onDevice = x.To(Device.IlgpuCpu).QMatMul(w.To(Device.IlgpuCpu));
        Assert.Equal(Device.IlgpuCpu, onDevice.Device);
        AssertClose(expected, onDevice.To(Device.Cpu), 5e-2, 5e-2, "ilgpu-cpu");
    }
}
