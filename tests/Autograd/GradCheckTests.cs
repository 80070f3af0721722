using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Autograd;

/// <summary>Finite-difference gradient checks (float64) for every differentiable op.</summary>
public class GradCheckTests
{
    private static Tensor R(int seed, params int[] shape) => RandomTensor(shape, seed);

    /// <summary>Values in [lo, hi): keeps log, sqrt, pow and division away from their singular points.</summary>
    private static Tensor Positive(int seed, params int[] shape) => R(seed, shape).MulScalar(0.4).AddScalar(1.0);

    // ---- movement ----

    [Fact] public void Reshape() => GradCheck.Check(x => x.Reshape(6, 2).Square(), R(1, 3, 4));
    [Fact] public void Permute() => GradCheck.Check(x => x.Permute(2, 0, 1).Square(), R(2, 2, 3, 4));
    [Fact] public void Transpose_then_reshape_copies() => GradCheck.Check(x => x.MT.Reshape(-1).Square(), R(3, 3, 5));
    [Fact] public void Expand() => GradCheck.Check(x => x.Expand(4, 3, 5).Square(), R(4, 3, 1));
    [Fact] public void Slice() => GradCheck.Check(x => x.Slice(1, 1, 4).Square(), R(5, 3, 5));
    [Fact] public void Narrow_twice() => GradCheck.Check(x => x.Narrow(0, 1, 2).Narrow(1, 0, 2).Exp(), R(6, 4, 3));
    [Fact] public void Cat() => GradCheck.Check(xs => Tensor.Cat([xs[0], xs[1], xs[0]], 1).Square(), [R(7, 2, 3), R(8, 2, 1)]);
    [Fact] public void Stack() => GradCheck.Check(xs => Tensor.Stack([xs[0], xs[1]], 0).Tanh(), [R(9, 3), R(10, 3)]);
    [Fact] public void Split() => GradCheck.Check(x => x.Split(2, 1)[1].Square(), R(11, 3, 5));
    [Fact] public void Contiguous_and_clone() => GradCheck.Check(x => x.MT.Contiguous().Clone().Exp(), R(12, 3, 4));
    [Fact] public void Squeeze_unsqueeze() => GradCheck.Check(x => x.Unsqueeze(0).Squeeze(0).Unsqueeze(2).Square(), R(13, 3, 2));
    // A float32 round trip loses digits below 1e-7: a large step (exact for a quadratic) keeps the check meaningful.
    [Fact] public void Cast_to_f32_and_back() => GradCheck.Check(xs => xs[0].To(DType.F32).To(DType.F64).Square(), [R(14, 5)], h: 1e-2, rtol: 1e-5, atol: 1e-6);

    // ---- unary ----

    public static TheoryData<string> UnaryOps => new() { "neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "erf", "add_scalar", "mul_scalar", "pow_scalar", "clamp", "square", "reciprocal" };

    private static Tensor Unary(string op, Tensor x) => op switch
    {
        "neg" => x.Neg(),
        "abs" => x.Abs(),
        "exp" => x.Exp(),
        "log" => x.Log(),
        "sqrt" => x.Sqrt(),
        "rsqrt" => x.Rsqrt(),
        "tanh" => x.Tanh(),
        "sigmoid" => x.Sigmoid(),
        "relu" => x.Relu(),
        "gelu" => x.Gelu(),
        "gelu_tanh" => x.GeluTanh(),
        "silu" => x.Silu(),
        "erf" => x.Erf(),
        "add_scalar" => x.AddScalar(2.5),
        "mul_scalar" => x.MulScalar(-1.5),
        "pow_scalar" => x.Pow(2.7),
        "clamp" => x.Clamp(-0.5, 0.4),
        "square" => x.Square(),
        "reciprocal" => x.Reciprocal(),
        _ => throw new ArgumentException(op),
    };

    [Theory, MemberData(nameof(UnaryOps))]
    public void Unary_ops(string op)
    {
        bool needsPositive = op is "log" or "sqrt" or "rsqrt" or "pow_scalar" or "reciprocal";
        // 3 x 7 with values spread over [-2, 2): relu/abs/clamp kinks are hit with probability 0.
        var x = needsPositive ? Positive(20, 3, 7) : R(20, 3, 7).MulScalar(2);
        GradCheck.Check(t => Unary(op, t), x);
    }

    // ---- binary, with broadcasting ----

    public static TheoryData<string, int[], int[]> BinaryCases()
    {
        var data = new TheoryData<string, int[], int[]>();
        foreach (var op in new[] { "add", "sub", "mul", "div", "pow", "maximum", "minimum" })
        {
            data.Add(op, [3, 4], [3, 4]);
            data.Add(op, [2, 3, 4], [4]);     // trailing broadcast (bias)
            data.Add(op, [3, 1], [1, 5]);     // both sides broadcast
            data.Add(op, [], [2, 3]);         // scalar
        }
        return data;
    }

    private static Tensor Binary(string op, Tensor a, Tensor b) => op switch
    {
        "add" => a + b,
        "sub" => a - b,
        "mul" => a * b,
        "div" => a / b,
        "pow" => a.Pow(b),
        "maximum" => a.Maximum(b),
        "minimum" => a.Minimum(b),
        _ => throw new ArgumentException(op),
    };

    [Theory, MemberData(nameof(BinaryCases))]
    public void Binary_ops(string op, int[] shapeA, int[] shapeB)
    {
        bool positive = op is "div" or "pow";
        var a = positive ? Positive(30, shapeA) : R(30, shapeA);
        var b = positive ? Positive(31, shapeB) : R(31, shapeB);
        GradCheck.Check((x, y) => Binary(op, x, y), a, b);
    }

    [Fact]
    public void Where_routes_gradient_by_condition()
    {
        var cond = R(40, 3, 4).Gt(0);
        GradCheck.Check((a, b) => Tensor.Where(cond, a, b), R(41, 3, 4), R(42, 4));
    }

    // ---- reductions ----

    public static TheoryData<string, int[]?, bool> ReduceCases()
    {
        var data = new TheoryData<string, int[]?, bool>();
        foreach (var op in new[] { "sum", "mean", "max", "min", "var" })
        {
            data.Add(op, null, false);
            data.Add(op, [1], false);
            data.Add(op, [0, 2], true);
            data.Add(op, [-1], true);
        }
        return data;
    }

    [Theory, MemberData(nameof(ReduceCases))]
    public void Reductions(string op, int[]? axes, bool keepDim)
    {
        GradCheck.Check(x => op switch
        {
            "sum" => x.Sum(axes, keepDim),
            "mean" => x.Mean(axes, keepDim),
            "max" => x.Max(axes, keepDim),
            "min" => x.Min(axes, keepDim),
            "var" => x.Var(axes, keepDim),
            _ => throw new ArgumentException(op),
        }, R(50, 3, 4, 5));
    }

    [Fact]
    public void Max_with_ties_shares_the_gradient()
    {
        var x = Tensor.FromArray(new double[] { 1, 3, 3, 2 }, [4]);
        x.RequiresGrad = true;
        x.Max().Backward();
        AssertClose(new double[] { 0, 0.5, 0.5, 0 }, x.Grad!.ToDoubleArray());
    }

    [Fact] public void Biased_variance() => GradCheck.Check(x => x.Var(1, correction: 0), R(51, 4, 6));

    // ---- linear algebra ----

    [Fact] public void MatMul_2d() => GradCheck.Check((a, b) => a.MatMul(b), R(60, 3, 5), R(61, 5, 4));
    [Fact] public void MatMul_batched() => GradCheck.Check((a, b) => a.MatMul(b), R(62, 2, 3, 5), R(63, 2, 5, 4));
    [Fact] public void MatMul_broadcast_weight() => GradCheck.Check((a, b) => a.MatMul(b), R(64, 2, 3, 5), R(65, 5, 4));
    [Fact] public void MatMul_broadcast_batch() => GradCheck.Check((a, b) => a.MatMul(b), R(66, 1, 3, 5), R(67, 4, 5, 2));
    [Fact] public void MatMul_transposed_operand() => GradCheck.Check((a, b) => a.MatMul(b.MT), R(68, 3, 5), R(69, 4, 5));
    [Fact] public void MatMul_transposed_left_operand() => GradCheck.Check((a, b) => a.MT.MatMul(b), R(74, 5, 3), R(75, 5, 4));
    [Fact] public void MatMul_batch_times_transposed_weight() => GradCheck.Check((a, w) => a.MatMul(w.MT), R(76, 2, 3, 5), R(77, 4, 5));

    /// <summary>Slices of one tensor accumulate into one gradient buffer, also after a plain use of the tensor.</summary>
    [Fact]
    public void Slices_of_one_tensor_and_the_tensor_itself() => GradCheck.Check(x =>
    {
        var p = x.Split(2, 1);
        return (p[0] * p[1] + p[2].Exp()).Sum(1) + x.Square().Sum(1) + x.Narrow(1, 1, 3).Sum(1);
    }, R(78, 3, 6));
    [Fact] public void MatMul_vector() => GradCheck.Check((a, b) => a.MatMul(b), R(70, 5), R(71, 5, 3));
    [Fact] public void MatMul_matrix_vector() => GradCheck.Check((a, b) => a.MatMul(b), R(72, 3, 5), R(73, 5));

    // ---- nn ops ----

    [Fact] public void Softmax() => GradCheck.Check(x => x.Softmax(-1), R(80, 3, 7));
    [Fact] public void Softmax_inner_axis() => GradCheck.Check(x => x.Softmax(0), R(81, 4, 3));
    [Fact] public void LogSoftmax() => GradCheck.Check(x => x.LogSoftmax(-1), R(82, 3, 7));

    [Fact] public void LayerNorm_affine() => GradCheck.Check(xs => xs[0].LayerNorm(xs[1], xs[2]), [R(90, 2, 3, 8), R(91, 8), R(92, 8)]);
    [Fact] public void LayerNorm_weight_only() => GradCheck.Check((x, w) => x.LayerNorm(w, null), R(93, 4, 8), R(94, 8));
    [Fact] public void LayerNorm_bias_only() => GradCheck.Check((x, b) => x.LayerNorm(null, b), R(95, 4, 8), R(96, 8));
    [Fact] public void LayerNorm_plain() => GradCheck.Check(x => x.LayerNorm(null, null), R(97, 5, 6));
    [Fact] public void RmsNorm() => GradCheck.Check((x, w) => x.RmsNorm(w), R(98, 3, 8), R(99, 8));
    [Fact] public void RmsNorm_plain() => GradCheck.Check(x => x.RmsNorm(null), R(100, 3, 8));

    [Fact]
    public void Embedding_with_repeated_ids()
    {
        var ids = Tensor.FromArray(new long[] { 1, 3, 1, 0, 3, 3 }, [2, 3]);
        GradCheck.Check(w => Tensor.Embedding(w, ids), R(110, 5, 4));
    }

    [Fact]
    public void IndexSelect_inner_axis()
    {
        var idx = Tensor.FromArray(new int[] { 2, 0, 2 }, [3]);
        GradCheck.Check(x => x.IndexSelect(1, idx), R(111, 2, 4, 3));
    }

    [Fact]
    public void Gather()
    {
        var idx = Tensor.FromArray(new long[] { 0, 2, 2, 1, 1, 1 }, [2, 3]);
        GradCheck.Check(x => x.Gather(1, idx), R(112, 2, 4));
    }

    [Fact]
    public void CrossEntropy_with_ignored_target()
    {
        var targets = Tensor.FromArray(new long[] { 2, -100, 0, 4, 1, 4 }, [2, 3]);
        GradCheck.Check(logits => Tensor.CrossEntropy(logits, targets), R(120, 2, 3, 5).MulScalar(3));
    }

    [Fact]
    public void Conv2d_with_bias_stride_padding()
        => GradCheck.Check(xs => Tensor.Conv2d(xs[0], xs[1], xs[2], stride: 2, padding: 1), [R(130, 2, 3, 5, 6), R(131, 4, 3, 3, 3), R(132, 4)]);

    [Fact]
    public void Conv2d_grouped_dilated()
        => GradCheck.Check((x, w) => Tensor.Conv2d(x, w, null, new Conv2dAttrs(1, 1, 2, 1, 2, 1, 2)), R(133, 1, 4, 6, 5), R(134, 6, 2, 2, 3));

    [Fact] public void MaxPool2d() => GradCheck.Check(x => x.MaxPool2d(2, 2, 1), R(140, 2, 2, 5, 5));
    [Fact] public void AvgPool2d() => GradCheck.Check(x => x.AvgPool2d(3, 2, 1), R(141, 2, 2, 5, 6));
    [Fact] public void UpsampleNearest2d() => GradCheck.Check(x => x.UpsampleNearest2d(2), R(142, 1, 2, 3, 2));

    // ---- compositions the models use ----

    [Fact]
    public void Causal_attention_by_plain_math()
    {
        const int t = 5;
        var future = Tensor.Arange(t).Unsqueeze(0).Gt(Tensor.Arange(t).Unsqueeze(1)); // (T, T): key j > query i
        var minusInf = Tensor.Scalar(double.NegativeInfinity, DType.F64);
        GradCheck.Check(xs =>
        {
            var (q, k, v) = (xs[0], xs[1], xs[2]);                            // (B, T, hs)
            var scores = q.MatMul(k.MT).MulScalar(1 / Math.Sqrt(q.Shape[^1])); // (B, T, T)
            return Tensor.Where(future, minusInf, scores).Softmax(-1).MatMul(v);
        }, [R(151, 2, t, 4), R(152, 2, t, 4), R(153, 2, t, 3)]);
    }

    [Fact]
    public void Fused_gelu_backward_in_float32_matches_float64()
    {
        var x = R(150, 4, 257).MulScalar(6);
        var dy = R(151, 4, 257);
        var exact = Tensor.GeluBackward(dy, x).ToDoubleArray();
        var f32 = Tensor.GeluBackward(dy.To(DType.F32), x.To(DType.F32)).ToDoubleArray();
        AssertClose(exact, f32, rtol: 1e-5, atol: 1e-6, "gelu backward f32");
    }
}
