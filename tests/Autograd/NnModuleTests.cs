using ManagedTensor.Nn;
using Xunit;

namespace ManagedTensor.Tests.Autograd;

/// <summary>Modules: naming, state dicts, Linear's math and init, dropout's statistics and modes.</summary>
public class NnModuleTests
{
    private sealed class TwoLayer : Module
    {
        public TwoLayer(bool tie)
        {
            var gen = new Generator(5);
            A = Child("a", new Linear(3, 4, bias: true, gen, Device.Cpu));
            B = Child("b", new Linear(4, 3, bias: false, gen, Device.Cpu));
            if (tie) Child("again", A); // the same module twice: its tensors must be listed once
        }

        public Linear A { get; }
        public Linear B { get; }
    }

    [Fact]
    public void Named_parameters_are_dotted_in_registration_order_and_deduplicated()
    {
        var m = new TwoLayer(tie: true);
        Assert.Equal(["a.weight", "a.bias", "b.weight"], m.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(12 + 4 + 12, m.ParameterCount());
        Assert.All(m.Parameters(), p => Assert.True(p.RequiresGrad));
    }

    [Fact]
    public void Load_state_dict_copies_values_and_names_what_is_wrong()
    {
        var src = new TwoLayer(tie: false);
        var dst = new TwoLayer(tie: false);
        dst.B.Weight.Fill_(0);
        dst.LoadStateDict(src.StateDict());
        Assert.Equal(src.B.Weight.ToArray<float>(), dst.B.Weight.ToArray<float>());

        var missing = src.StateDict();
        missing.Remove("a.bias");
        Assert.Contains("a.bias", Assert.Throws<ArgumentException>(() => dst.LoadStateDict(missing)).Message);

        var wrongShape = src.StateDict();
        wrongShape["b.weight"] = Tensor.Zeros([3, 5]);
        var e = Assert.Throws<ArgumentException>(() => dst.LoadStateDict(wrongShape, source: "x.safetensors"));
        Assert.Contains("b.weight", e.Message);
        Assert.Contains("[3, 5]", e.Message);
        Assert.Contains("x.safetensors", e.Message);

        var extra = src.StateDict();
        extra["c.weight"] = Tensor.Zeros([1]);
        Assert.Contains("c.weight", Assert.Throws<ArgumentException>(() => dst.LoadStateDict(extra)).Message);
        dst.LoadStateDict(extra, strict: false);
    }

    [Fact]
    public void Linear_is_x_times_w_transposed_plus_b_over_leading_axes()
    {
        var lin = new Linear(3, 2, bias: true, new Generator(1), Device.Cpu);
        var x = TestUtil.RandomTensor([2, 4, 3], seed: 3, DType.F32);
        var y = lin.Forward(x);
        Assert.Equal([2, 4, 2], y.Shape);
        var xs = x.ToDoubleArray();
        var w = lin.Weight.ToDoubleArray();
        var b = lin.Bias!.ToDoubleArray();
        var expected = new double[16];
        for (int r = 0; r < 8; r++)
            for (int o = 0; o < 2; o++)
            {
                double s = b[o];
                for (int i = 0; i < 3; i++) s += xs[r * 3 + i] * w[o * 3 + i];
                expected[r * 2 + o] = s;
            }
        TestUtil.AssertClose(expected, y.ToDoubleArray(), 1e-5, 1e-6, "linear");
        Assert.Throws<ArgumentException>(() => lin.Forward(Tensor.Zeros([2, 4])));
    }

    [Fact]
    public void Linear_default_init_is_uniform_within_one_over_sqrt_fan_in()
    {
        var lin = new Linear(64, 32, bias: true, new Generator(2), Device.Cpu);
        var w = lin.Weight.ToDoubleArray();
        Assert.All(w, v => Assert.InRange(v, -0.125, 0.125));
        Assert.True(w.Max() > 0.11 && w.Min() < -0.11, "spread should reach the bound");
        var normal = new Linear(64, 32, bias: true, new Generator(2), Device.Cpu, initStd: 0.02);
        double std = Math.Sqrt(normal.Weight.ToDoubleArray().Average(v => v * v));
        Assert.InRange(std, 0.018, 0.022);
        Assert.All(normal.Bias!.ToDoubleArray(), v => Assert.Equal(0, v));
    }

    [Fact]
    public void Dropout_keeps_one_minus_p_scales_by_its_inverse_and_is_identity_in_eval()
    {
        var d = new Dropout(0.25, new Generator(9));
        var x = Tensor.Ones([100, 100]);
        var y = d.Forward(x).ToDoubleArray();
        double kept = y.Count(v => v != 0) / (double)y.Length;
        Assert.InRange(kept, 0.73, 0.77);
        Assert.All(y, v => Assert.True(v == 0 || Math.Abs(v - 1 / 0.75) < 1e-6));
        d.Eval();
        Assert.Same(x, d.Forward(x));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(1.0, new Generator(1)));
    }

    [Fact]
    public void Dropout_gradient_uses_the_forward_mask()
    {
        var x = TestUtil.RandomTensor([6, 7], seed: 4);
        x.RequiresGrad = true;
        var y = Functional.Dropout(x, 0.5, new Generator(3));
        y.Sum().Backward();
        var yv = y.ToDoubleArray();
        var g = x.Grad!.ToDoubleArray();
        for (int i = 0; i < g.Length; i++) Assert.Equal(yv[i] == 0 ? 0 : 2, g[i], 12);
    }

    [Fact]
    public void Attention_matches_a_scalar_reference_and_is_causal()
    {
        var q = TestUtil.RandomTensor([1, 2, 5, 3], seed: 11);
        var k = TestUtil.RandomTensor([1, 2, 5, 3], seed: 12);
        var v = TestUtil.RandomTensor([1, 2, 5, 3], seed: 13);
        var y = Functional.Attention(q, k, v, causal: true).ToDoubleArray();
        double[] Q = q.ToDoubleArray(), K = k.ToDoubleArray(), Vv = v.ToDoubleArray();
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 5; i++)
            {
                var w = new double[i + 1];
                for (int j = 0; j <= i; j++)
                {
                    double s = 0;
                    for (int d = 0; d < 3; d++) s += Q[(h * 5 + i) * 3 + d] * K[(h * 5 + j) * 3 + d];
                    w[j] = Math.Exp(s / Math.Sqrt(3));
                }
                double z = w.Sum();
                for (int d = 0; d < 3; d++)
                {
                    double o = 0;
                    for (int j = 0; j <= i; j++) o += w[j] / z * Vv[(h * 5 + j) * 3 + d];
                    Assert.Equal(o, y[(h * 5 + i) * 3 + d], 10);
                }
            }
        GradCheck.Check(xs => Functional.Attention(xs[0], xs[1], xs[2], causal: true), [q, k, v]);
    }
}
