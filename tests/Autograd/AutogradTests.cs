using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Autograd;

/// <summary>The tape's mechanics: accumulation, reuse, NoGrad, Detach, errors.</summary>
public class AutogradTests
{
    private static Tensor Leaf(double[] values, params int[] shape)
    {
        var t = Tensor.FromArray(values, shape);
        t.RequiresGrad = true;
        return t;
    }

    [Fact]
    public void Gradients_accumulate_across_backward_calls_until_zeroed()
    {
        var x = Leaf([1, 2, 3], 3);
        (x * x).Sum().Backward();
        (x * x).Sum().Backward();
        AssertClose(new double[] { 4, 8, 12 }, x.Grad!.ToDoubleArray());
        new[] { x }.ZeroGrad();
        Assert.Null(x.Grad);
        x.Sum().Backward();
        AssertClose(new double[] { 1, 1, 1 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void A_tensor_used_twice_gets_the_sum_of_both_paths()
    {
        var x = Leaf([2], 1);
        var y = x * x;             // dy/dx = 2x
        (y * x + y).Sum().Backward(); // d(x^3 + x^2)/dx = 3x^2 + 2x = 16
        AssertClose(new double[] { 16 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Nothing_is_recorded_under_NoGrad()
    {
        var x = Leaf([1, 2], 2);
        Tensor y;
        using (GradMode.NoGrad()) y = x * x;
        Assert.False(y.RequiresGrad);
        Assert.Null(y.Node);
        Assert.Throws<InvalidOperationException>(() => y.Sum().Backward());
    }

    [Fact]
    public void Detach_stops_the_gradient()
    {
        var x = Leaf([3], 1);
        (x * x.Detach()).Sum().Backward(); // only the first factor is differentiated
        AssertClose(new double[] { 3 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Leaves_without_RequiresGrad_get_no_gradient()
    {
        var x = Leaf([1, 2], 2);
        var c = Tensor.FromArray(new double[] { 5, 6 }, [2]);
        (x * c).Sum().Backward();
        Assert.Null(c.Grad);
        AssertClose(new double[] { 5, 6 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Broadcast_bias_gradient_is_summed_over_the_batch()
    {
        var bias = Leaf([0, 0, 0], 3);
        var x = Tensor.Ones([4, 2, 3], DType.F64);
        (x + bias).Sum().Backward();
        AssertClose(new double[] { 8, 8, 8 }, bias.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Leaf_gradient_is_contiguous_and_owned()
    {
        var w = Leaf([1, 2, 3, 4, 5, 6], 2, 3);
        w.MT.Sum(0).Sum().Backward(); // the incoming gradient is a broadcast view
        Assert.True(w.Grad!.IsContiguous);
        Assert.NotSame(w.Grad.Storage, w.Storage);
        AssertClose(Enumerable.Repeat(1.0, 6).ToArray(), w.Grad.ToDoubleArray());
    }

    [Fact]
    public void Explicit_output_gradient_for_a_non_scalar_root()
    {
        var x = Leaf([1, 2, 3], 3);
        (x * x).Backward(Tensor.FromArray(new double[] { 1, 0, -1 }, [3]));
        AssertClose(new double[] { 2, 0, -6 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Backward_errors_name_the_tensor()
    {
        var x = Leaf([1, 2, 3], 3);
        var e = Assert.Throws<ArgumentException>(() => (x * x).Backward());
        Assert.Contains("[3]", e.Message);
        Assert.Throws<ArgumentException>(() => (x * x).Backward(Tensor.Ones([2], DType.F64)));
    }

    [Fact]
    public void Random_tensors_are_constants()
    {
        var x = Leaf([1, 2, 3], 3);
        var r = Tensor.Rand([3], new Generator(1), dtype: DType.F64);
        // rand has no inputs, so it is a constant: the product is differentiable in x only
        (x * r).Sum().Backward();
        AssertClose(r.ToDoubleArray(), x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Deep_chain_does_not_overflow_the_stack()
    {
        var x = Leaf([1], 1);
        var y = x;
        for (int i = 0; i < 20_000; i++) y = y.AddScalar(0);
        y.Sum().Backward();
        AssertClose(new double[] { 1 }, x.Grad!.ToDoubleArray());
    }

    [Fact]
    public void Float32_training_step_reduces_a_quadratic()
    {
        var w = Tensor.FromArray(new float[] { 3, -2 }, [2]);
        w.RequiresGrad = true;
        for (int step = 0; step < 50; step++)
        {
            w.Grad = null;
            (w * w).Sum().Backward();
            using (GradMode.NoGrad()) w.CopyFrom_(w - w.Grad!.MulScalar(0.1));
        }
        Assert.True(w.Abs().Max().Item() < 1e-3);
    }
}
