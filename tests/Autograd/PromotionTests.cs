using Xunit;

namespace ManagedTensor.Tests.Autograd;

/// <summary>
/// Binary ops over two float dtypes promote as torch.result_type (bf16 + f32 -> f32, f16 + bf16 -> f32, f64 wins) (the
/// GPU backend's case is in tests/Gpu/AutocastDeviceTests.cs), and each input gets its gradient in its own dtype: the float64 side checked by finite
/// differences, the float32 and bf16 sides against the same op in one dtype. Integer with float is still refused.
/// </summary>
public sealed class PromotionTests
{
    private static Tensor Leaf(int[] shape, int seed, DType dtype)
    {
        var t = TestUtil.RandomTensor(shape, seed, DType.F64).To(dtype).Detach();
        t.RequiresGrad = true;
        return t;
    }

    [Theory]
    [InlineData(DType.BF16, DType.F32, DType.F32)]
    [InlineData(DType.F32, DType.F16, DType.F32)]
    [InlineData(DType.F16, DType.BF16, DType.F32)] // neither 16-bit type holds the other
    [InlineData(DType.BF16, DType.F64, DType.F64)]
    [InlineData(DType.F64, DType.F32, DType.F64)]
    public void Mixed_float_dtypes_promote_as_pytorchs_result_type(DType a, DType b, DType expected)
    {
        Assert.Equal(expected, DTypeInfo.PromoteFloat(a, b));
        var x = TestUtil.RandomTensor([2, 3], 1, a);
        var y = TestUtil.RandomTensor([3], 2, b); // broadcast, as a bias
        foreach (var (name, z) in new[] { ("add", x + y), ("sub", x - y), ("mul", x * y), ("div", x / y), ("max", x.Maximum(y)),
                     ("where", Tensor.Where(x.Gt(0), x, y)) })
        {
            Assert.True(z.DType == expected, $"{name}: {z.Describe()}");
            // The value is the op on both operands converted to the common dtype.
            var (xe, ye) = (x.To(expected), y.To(expected));
            var reference = name switch { "add" => xe + ye, "sub" => xe - ye, "mul" => xe * ye, "div" => xe / ye, "max" => xe.Maximum(ye), _ => Tensor.Where(x.Gt(0), xe, ye) };
            Assert.Equal(reference.ToDoubleArray(), z.ToDoubleArray());
        }
        Assert.Equal((x.To(expected).Lt(y.To(expected))).ToArray<byte>(), x.Lt(y).ToArray<byte>()); // comparisons compare promoted values
    }

    [Fact]
    public void The_float64_side_of_a_promoted_op_passes_the_finite_difference_check()
    {
        // c is a float32 constant inside f: b * c + c / b and max(b, c) promote to float64 and differentiate as float64.
        var c = TestUtil.RandomTensor([3, 4], 5, DType.F32);
        GradCheck.Check(b => b * c + c / b - b.Maximum(c), TestUtil.RandomTensor([3, 4], 6, DType.F64).AddScalar(3));
        GradCheck.Check(b => (c - b.Square()).Sum(0), TestUtil.RandomTensor([1, 4], 7, DType.F64)); // broadcast: summed back
    }

    [Fact]
    public void Each_input_gets_its_gradient_in_its_own_dtype()
    {
        // a (F32) * b (F64): the F32 side's gradient is the float64 one rounded to float32, in F32.
        var a = Leaf([2, 3], 1, DType.F32);
        var b = Leaf([3], 2, DType.F64);
        (a * b).Square().Sum().Backward();
        Assert.Equal(DType.F32, a.Grad!.DType);
        Assert.Equal(DType.F64, b.Grad!.DType);
        var a64 = Leaf([2, 3], 1, DType.F32).To(DType.F64).Detach();
        a64.RequiresGrad = true;
        var b64 = Leaf([3], 2, DType.F64);
        (a64 * b64).Square().Sum().Backward();
        Assert.Equal(a64.Grad!.To(DType.F32).ToDoubleArray(), a.Grad.ToDoubleArray());
        Assert.Equal(b64.Grad!.ToDoubleArray(), b.Grad.ToDoubleArray());
    }

    [Fact]
    public void A_bf16_input_of_a_float32_op_gets_a_bf16_gradient_within_bf16_tolerance_of_the_float32_one()
    {
        // The residual stream: x (F32) + h (BF16) * g (F32), then a float32 op.
        var x = Leaf([4, 8], 1, DType.F32);
        var h = Leaf([4, 8], 2, DType.BF16);
        var g = Leaf([8], 3, DType.F32);
        var y = x + h * g;
        Assert.Equal(DType.F32, y.DType);
        (y * y).Sum().Backward();
        Assert.Equal(DType.BF16, h.Grad!.DType);
        Assert.Equal(DType.F32, g.Grad!.DType);
        // The same sum in float32 throughout, from h's (bf16) values.
        var h32 = h.Detach().To(DType.F32);
        h32.RequiresGrad = true;
        var g32 = g.Detach();
        g32.RequiresGrad = true;
        var y32 = x.Detach() + h32 * g32;
        (y32 * y32).Sum().Backward();
        // dL/dh = 2 y g in float32, rounded once to bf16: within bf16's half step (2^-9 relative).
        TestUtil.AssertClose(h32.Grad!.ToDoubleArray(), h.Grad.ToDoubleArray(), 1.0 / 256, 1e-6, "d h");
        Assert.Equal(h32.Grad.To(DType.BF16).ToDoubleArray(), h.Grad.ToDoubleArray());
        TestUtil.AssertClose(g32.Grad!.ToDoubleArray(), g.Grad.ToDoubleArray(), 1e-6, 1e-6, "d g");
    }

    [Fact]
    public void Integer_with_float_is_refused_with_a_message_naming_both_tensors()
    {
        var f = TestUtil.RandomTensor([2, 3], 1, DType.F32);
        var i = Tensor.Arange(3, DType.I64);
        var e = Assert.Throws<ArgumentException>(() => f + i);
        Assert.Contains("F32", e.Message);
        Assert.Contains("I64", e.Message);
        Assert.Contains("only float dtypes promote", e.Message);
    }
}
