using ManagedTensor.Models.IO;
using ManagedTensor.Nn;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// BitLinear against the BitNet b1.58 training-tips code in PyTorch (tests/fixtures/bitnet/make_bitlinear_fixture.py,
/// float64): the fake-quantized forward and its straight-through gradients; the TQ2_0-packed inference forward
/// against the fake-quantized one within the Q8_K requantization bound; ternary codes outside {-1, 0, 1} refused.
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class BitLinearTests
{
    private static Dictionary<string, Tensor> Fixture()
    {
        using var file = SafeTensors.Open(Fixtures.Path("bitnet/bitlinear_reference.safetensors"));
        return file.LoadAll();
    }

    [Fact]
    public void Fake_quantized_forward_and_straight_through_gradients_match_pytorch()
    {
        var f = Fixture();
        var x = f["x"].Detach();
        var w = f["w"].Detach();
        x.RequiresGrad = w.RequiresGrad = true;
        var rows = x.Reshape(-1, 13).RmsNorm(null, BitLinear.NormEps);
        var y = BitLinear.FakeQuantized(rows, w).Reshape(2, 5, 11);
        TestUtil.AssertClose(f["y"], y, 1e-12, 1e-12, "y");
        (y * f["r"]).Sum().Backward();
        TestUtil.AssertClose(f["grad.x"], x.Grad!, 1e-10, 1e-12, "dL/dx");
        TestUtil.AssertClose(f["grad.w"], w.Grad!, 1e-10, 1e-12, "dL/dw");
        // The quantized weights are ternary times mean|W|.
        var wq = BitLinear.QuantizeWeights(w.Detach());
        TestUtil.AssertClose((f["ternary"] * f["scale"].Reshape([])), wq, 1e-14, 1e-15, "w_q");
    }

    [Fact]
    public void The_float32_module_matches_pytorch()
    {
        var f = Fixture();
        var layer = new BitLinear(13, 11, new Generator(1), Device.Cpu);
        layer.LoadStateDict(new Dictionary<string, Tensor> { ["weight"] = f["w"] });
        var y = layer.Forward(f["x"].To(DType.F32));
        TestUtil.AssertClose(f["y"], y, 1e-4, 1e-5, "y");
    }

    /// <summary>
    /// Packed inference runs the ternary codes exactly (TQ2_0 block scale 1, s in float32), so it differs from the
    /// fake-quantized forward only by QMatMul's Q8_K requantization of x_q: at most half a Q8_K step (block max / 127)
    /// per activation, |dy_o| &lt;= s * sum_i |q_oi| * max|x_q in i's block| / 254. The test computes that bound.
    /// </summary>
    [Theory]
    [InlineData(13, 11)]
    [InlineData(300, 7)]
    public void Packed_ternary_inference_equals_the_fake_quantized_forward_within_the_q8k_bound(int inF, int outF)
    {
        var layer = new BitLinear(inF, outF, new Generator(5), Device.Cpu, initStd: 0.05);
        var x = Tensor.Randn([3, inF], new Generator(6));
        var train = layer.Forward(x).ToDoubleArray();
        layer.Pack();
        Assert.True(layer.IsPacked);
        var packed = layer.Forward(x).ToDoubleArray();

        var xq = BitLinear.QuantizeActivations(x.RmsNorm(null, BitLinear.NormEps)).ToDoubleArray();
        var w = layer.Weight.ToDoubleArray();
        double s = w.Average(Math.Abs);
        for (int n = 0; n < 3; n++)
            for (int o = 0; o < outF; o++)
            {
                double bound = 1e-5 * Math.Abs(train[n * outF + o]) + 1e-6;
                for (int b0 = 0; b0 < inF; b0 += 256)
                {
                    int b1 = Math.Min(inF, b0 + 256);
                    double blockMax = 0, codes = 0;
                    for (int i = b0; i < b1; i++)
                    {
                        blockMax = Math.Max(blockMax, Math.Abs(xq[n * inF + i]));
                        codes += Math.Abs(Math.Clamp(Math.Round(w[o * inF + i] / s), -1, 1));
                    }
                    bound += s * codes * blockMax / 254;
                }
                Assert.True(Math.Abs(packed[n * outF + o] - train[n * outF + o]) <= bound,
                    $"y[{n},{o}]: packed {packed[n * outF + o]} vs fake-quantized {train[n * outF + o]}, bound {bound}");
            }
    }

    /// <summary>On ILGPU's CPU accelerator: the fake-quantized forward and its gradients, and the packed TQ2_0 QMatMul, equal the CPU's.</summary>
    [Fact]
    public void Training_and_packed_forwards_on_ilgpu_cpu_equal_the_cpu()
    {
        var dev = Device.Parse("ilgpu-cpu");
        var cpu = new BitLinear(300, 5, new Generator(2), Device.Cpu, initStd: 0.05);
        var gpu = new BitLinear(300, 5, new Generator(2), dev, initStd: 0.05);
        var x = Tensor.Randn([3, 300], new Generator(3));
        var yc = cpu.Forward(x);
        var yg = gpu.Forward(x.To(dev));
        TestUtil.AssertClose(yc, yg.To(Device.Cpu), 1e-4, 1e-5, "fake-quantized y");
        yc.Sum().Backward();
        yg.Sum().Backward();
        TestUtil.AssertClose(cpu.Weight.Grad!, gpu.Weight.Grad!.To(Device.Cpu), 1e-4, 1e-5, "dL/dW");
        // The device's TQ2_0 QMatMul decodes the ternary weights and multiplies x_q in float (no Q8_K step, unlike the
        // CPU's integer dot product), so on the device the packed forward equals the fake-quantized one to float rounding.
        gpu.Pack();
        TestUtil.AssertClose(yc, gpu.Forward(x.To(dev)).To(Device.Cpu), 1e-4, 1e-5, "packed y on the device vs fake-quantized y");
    }

    [Fact]
    public void Ternary_codes_outside_minus_one_zero_one_are_refused_with_their_position()
    {
        var layer = new BitLinear(4, 2, new Generator(1), Device.Cpu);
        var codes = Tensor.FromArray(new float[] { 1, 0, -1, 0, 0, 2, 1, -1 }, [2, 4]);
        codes.Name = "blk.0.ffn";
        var e = Assert.Throws<UserErrorException>(() => layer.SetTernary(codes, 0.1));
        Assert.Contains("'blk.0.ffn'", e.Message);
        Assert.Contains("2 at [1, 1]", e.Message);
        Assert.Throws<UserErrorException>(() => layer.SetTernary(Tensor.Zeros([2, 4]), double.NaN));
        Assert.Throws<UserErrorException>(() => layer.SetTernary(Tensor.Zeros([4, 2]), 1));
        layer.SetTernary(Tensor.FromArray(new float[] { 1, 0, -1, 0, 0, -1, 1, -1 }, [2, 4]), 0.5);
        var y = layer.Forward(Tensor.Ones([1, 4]));  // rows of ones: x_q = 1 everywhere; y = 0.5 * row sums of codes
        TestUtil.AssertClose(new[] { 0.0, -0.5 }, y.ToDoubleArray(), 1e-6, 1e-6, "y");
    }
}
