using Xunit;
using static ManagedTensor.Tests.Engine.EngineRef;

namespace ManagedTensor.Tests.Engine;

/// <summary>Unary, binary, comparison and where kernels against plain float64 formulas, over contiguous, transposed, narrowed and broadcast inputs.</summary>
public class ElementwiseTests
{
    private static readonly int[][] Shapes = [[7, 13], [3, 1, 5], [], [1], [0, 4], [130, 257]];

    /// <summary>The same values laid out several ways: contiguous, transposed, narrowed, broadcast.</summary>
    public static IEnumerable<(string Name, Tensor X)> Variants(int[] shape, int seed, DType dtype, double lo = -1, double hi = 1)
    {
        yield return ("contiguous", Random(shape, seed, dtype, lo, hi));
        if (shape.Length >= 2)
        {
            var swapped = (int[])shape.Clone();
            (swapped[^1], swapped[^2]) = (swapped[^2], swapped[^1]);
            yield return ("transposed", Random(swapped, seed + 1, dtype, lo, hi).Transpose(-1, -2));
            var ones = (int[])shape.Clone();
            ones[0] = 1;
            yield return ("expanded", Random(ones, seed + 2, dtype, lo, hi).Expand(shape));
        }
        if (shape.Length >= 1 && EngineRef.Numel(shape) < 10000)
        {
            var taller = (int[])shape.Clone();
            taller[0] += 3;
            yield return ("narrowed", Random(taller, seed + 3, dtype, lo, hi).Narrow(0, 2, shape[0]));
        }
    }

    public static TheoryData<string, DType> FloatUnaryCases()
    {
        var data = new TheoryData<string, DType>();
        foreach (var op in new[] { "Neg", "Abs", "Exp", "Log", "Sqrt", "Rsqrt", "Tanh", "Sigmoid", "Relu", "Gelu", "GeluTanh", "Silu", "Erf",
                     "AddScalar", "MulScalar", "Pow2", "Pow0.5", "Pow-1", "Pow3", "Pow1.7", "Clamp" })
            foreach (var dt in new[] { DType.F32, DType.F64 }) data.Add(op, dt);
        return data;
    }

    private static (Func<Tensor, Tensor> Run, Func<double, double> Ref, bool Positive) UnaryOp(string name) => name switch
    {
        "Neg" => (x => x.Neg(), v => -v, false),
        "Abs" => (x => x.Abs(), Math.Abs, false),
        "Exp" => (x => x.Exp(), Math.Exp, false),
        "Log" => (x => x.Log(), Math.Log, true),
        "Sqrt" => (x => x.Sqrt(), Math.Sqrt, true),
        "Rsqrt" => (x => x.Rsqrt(), v => 1 / Math.Sqrt(v), true),
        "Tanh" => (x => x.Tanh(), Math.Tanh, false),
        "Sigmoid" => (x => x.Sigmoid(), v => 1 / (1 + Math.Exp(-v)), false),
        "Relu" => (x => x.Relu(), v => Math.Max(v, 0), false),
        "Gelu" => (x => x.Gelu(), v => 0.5 * v * (1 + ErfSeries(v / Math.Sqrt(2))), false),
        "GeluTanh" => (x => x.GeluTanh(), v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))), false),
        "Silu" => (x => x.Silu(), v => v / (1 + Math.Exp(-v)), false),
        "Erf" => (x => x.Erf(), ErfSeries, false),
        "AddScalar" => (x => x.AddScalar(2.5), v => v + 2.5, false),
        "MulScalar" => (x => x.MulScalar(-1.5), v => v * -1.5, false),
        "Pow2" => (x => x.Pow(2), v => v * v, false),
        "Pow0.5" => (x => x.Pow(0.5), Math.Sqrt, true),
        "Pow-1" => (x => x.Pow(-1), v => 1 / v, true),
        "Pow3" => (x => x.Pow(3), v => v * v * v, false),
        "Pow1.7" => (x => x.Pow(1.7), v => Math.Pow(v, 1.7), true),
        "Clamp" => (x => x.Clamp(-0.3, 0.4), v => Math.Min(Math.Max(v, -0.3), 0.4), false),
        _ => throw new ArgumentException(name),
    };

    /// <summary>erf by its Taylor series, 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)); accurate to ~1e-14 for |x| &lt;= 3.</summary>
    public static double ErfSeries(double x)
    {
        double term = x, sum = x;
        for (int n = 1; n < 200; n++)
        {
            term *= -x * x / n;
            sum += term / (2 * n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    [Theory]
    [MemberData(nameof(FloatUnaryCases))]
    public void FloatUnaryMatchesFormula(string name, DType dtype)
    {
        var (run, reference, positive) = UnaryOp(name);
        foreach (var shape in Shapes)
        {
            foreach (var (layout, x) in Variants(shape, 11, dtype, positive ? 0.1 : -3, 3))
            {
                var y = run(x);
                Assert.Equal(shape, y.Shape);
                Assert.Equal(dtype, y.DType);
                var expected = Values(x).Select(reference).ToArray();
                var (rtol, atol) = Tol(dtype);
                TestUtil.AssertClose(expected, Values(y), rtol, atol, $"{name} {dtype} {Tensor.ShapeString(shape)} {layout}");
            }
        }
    }

    [Fact]
    public void ErfKnownValues()
    {
        double[] x = [0, 1e-10, 0.1, 0.5, 0.84375, 1, 1.25, 1.5, 2, 2.857, 3, 4, 5.9, 6, 30, double.PositiveInfinity];
        double[] erf = [0, // from libm's erf (Python math.erf)
            1.1283791670955126e-10, 0.1124629160182849, 0.5204998778130465, 0.7672256612323416, 0.8427007929497149,
            0.9229001282564582, 0.9661051464753108, 0.9953222650189527, 0.9999466417399131, 0.9999779095030014,
            0.9999999845827421, 0.9999999999999999, 1, 1, 1];
        var t = Tensor.FromArray(x.Concat(x.Select(v => -v)).ToArray());
        var y = Values(t.Erf());
        var expected = erf.Concat(erf.Select(v => -v)).ToArray();
        TestUtil.AssertClose(expected, y, 3e-16, 1e-17, "erf");
        Assert.True(double.IsNaN(Values(Tensor.FromArray([double.NaN]).Erf())[0]));
    }

    [Fact]
    public void Float32GeluErrorBound()
    {
        // The float kernel's erf is good to 1.5e-7 absolute, so |gelu error| <= |x| * 7.5e-8 plus float rounding of the polynomial and exp.
        var grid = Enumerable.Range(0, 16_001).Select(i => -8 + i * 0.001).ToArray();
        var xf = Tensor.FromArray(grid.Select(v => (float)v).ToArray());
        var y = Values(xf.Gelu());
        var exactAll = Values(xf.To(DType.F64).Gelu());     // double erf, checked by ErfKnownValues
        for (int i = 0; i < grid.Length; i++)
        {
            double x = (float)grid[i];
            double exact = exactAll[i];
            Assert.True(Math.Abs(y[i] - exact) <= 1.5e-7 * Math.Abs(x) + 2.4e-7 * Math.Abs(exact) + 1e-30, $"gelu({x}) = {y[i]}, exact {exact}");
        }
        Assert.True(float.IsNaN(Tensor.FromArray([float.NaN]).Gelu().ToArray<float>()[0]));
        Assert.Equal(float.PositiveInfinity, Tensor.FromArray([float.PositiveInfinity]).Gelu().ToArray<float>()[0]);
        // Far left (|x| >= 13.2, where exp(-x^2/2) leaves float's normal range) gelu and its gradient vanish, in the 16-
        // and 8-wide paths and the scalar tail (25 values) alike: not the 1e-36 to 1e-8 that exp's floor would leave.
        var far = Tensor.FromArray(Enumerable.Range(0, 25).Select(i => -13.2f - 7f * i * i).ToArray());
        far.RequiresGrad = true;
        var g = far.Gelu();
        g.Sum().Backward();
        Assert.All(g.ToArray<float>(), v => Assert.InRange(v, -1e-37f, 0f));
        Assert.All(far.Grad!.ToArray<float>(), v => Assert.InRange(v, -1e-37f, 0f));
    }

    [Fact]
    public void NaNPropagatesThroughReluClampMaximum()
    {
        var x = Tensor.FromArray([float.NaN, -1f, 2f]);
        Assert.True(float.IsNaN(x.Relu().ToArray<float>()[0]));
        Assert.True(float.IsNaN(x.Clamp(0, 1).ToArray<float>()[0]));
        var m = x.Maximum(Tensor.FromArray([0f, 0f, float.NaN])).ToArray<float>();
        Assert.True(float.IsNaN(m[0]) && m[1] == 0 && float.IsNaN(m[2]));
        var n = x.Minimum(Tensor.FromArray([0f, 0f, 0f])).ToArray<float>();
        Assert.True(float.IsNaN(n[0]) && n[1] == -1 && n[2] == 0);
    }

    [Theory]
    [InlineData(DType.I32)]
    [InlineData(DType.I64)]
    public void IntegerUnary(DType dtype)
    {
        (Func<Tensor, Tensor>, Func<double, double>)[] ops =
        [
            (x => x.Neg(), v => -v), (x => x.Abs(), Math.Abs), (x => x.Relu(), v => Math.Max(v, 0)),
            (x => x.AddScalar(3), v => v + 3), (x => x.MulScalar(-2), v => v * -2), (x => x.Clamp(-5, 5), v => Math.Clamp(v, -5, 5)),
        ];
        foreach (var (run, reference) in ops)
            foreach (var (layout, x) in Variants([7, 13], 5, dtype, -20, 20))
            {
                var y = run(x);
                Assert.Equal(dtype, y.DType);
                Assert.Equal(Values(x).Select(reference).ToArray(), Values(y));
            }
    }

    public static TheoryData<string, DType> BinaryCases()
    {
        var data = new TheoryData<string, DType>();
        foreach (var op in new[] { "Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum" })
            foreach (var dt in new[] { DType.F32, DType.F64, DType.I32, DType.I64 })
                if (dt.IsFloat() || op is not ("Div" or "Pow")) data.Add(op, dt);
        return data;
    }

    private static (Func<Tensor, Tensor, Tensor> Run, Func<double, double, double> Ref) BinaryOp(string name) => name switch
    {
        "Add" => ((a, b) => a + b, (a, b) => a + b),
        "Sub" => ((a, b) => a - b, (a, b) => a - b),
        "Mul" => ((a, b) => a * b, (a, b) => a * b),
        "Div" => ((a, b) => a / b, (a, b) => a / b),
        "Pow" => ((a, b) => a.Pow(b), Math.Pow),
        "Maximum" => ((a, b) => a.Maximum(b), Math.Max),
        "Minimum" => ((a, b) => a.Minimum(b), Math.Min),
        _ => throw new ArgumentException(name),
    };

    /// <summary>Shape pairs: equal, row broadcast (bias), outer product, inner broadcast, scalar, empty, large.</summary>
    private static readonly (int[] A, int[] B)[] BroadcastPairs =
    [
        ([7, 13], [7, 13]), ([7, 13], [13]), ([7, 1], [1, 13]), ([2, 3, 4], [3, 1]), ([5], []), ([], [5]), ([], []),
        ([0, 3], [3]), ([130, 257], [257]), ([130, 257], []), ([130, 1], [130, 257]),
    ];

    [Theory]
    [MemberData(nameof(BinaryCases))]
    public void BinaryMatchesFormulaWithBroadcasting(string name, DType dtype)
    {
        var (run, reference) = BinaryOp(name);
        double lo = name is "Pow" or "Div" ? 0.5 : -10, hi = name is "Pow" ? 2 : 10;
        foreach (var (sa, sb) in BroadcastPairs)
        {
            var outShape = Tensor.BroadcastShapes(sa, sb);
            foreach (var (la, a) in Variants(sa, 21, dtype, lo, hi))
            {
                var b = Random(sb, 22, dtype, lo, hi);
                var check = (Tensor x, Tensor y, string what) =>
                {
                    var r = run(x, y);
                    Assert.Equal(outShape, r.Shape);
                    var va = Values(x);
                    var vb = Values(y);
                    var expected = new double[Numel(outShape)];
                    for (int i = 0; i < expected.Length; i++)
                    {
                        var idx = Unravel(i, outShape);
                        expected[i] = reference(Broadcast(va, x.Shape, idx), Broadcast(vb, y.Shape, idx));
                    }
                    if (!dtype.IsFloat()) expected = expected.Select(v => (double)(dtype == DType.I32 ? (int)(long)v : (long)v)).ToArray();
                    var (rtol, atol) = Tol(dtype);
                    TestUtil.AssertClose(expected, Values(r), rtol, atol, $"{name} {dtype} {Tensor.ShapeString(sa)} ({la}) with {Tensor.ShapeString(sb)} {what}");
                };
                check(a, b, "a op b");
                check(b, a, "b op a");
            }
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    [InlineData(DType.I32)]
    [InlineData(DType.I64)]
    [InlineData(DType.I8)]
    [InlineData(DType.U8)]
    public void ComparisonsGiveU8(DType dtype)
    {
        (Func<Tensor, Tensor, Tensor>, Func<double, double, bool>)[] ops =
        [
            ((a, b) => a.Eq(b), (a, b) => a == b), ((a, b) => a.Ne(b), (a, b) => a != b), ((a, b) => a.Lt(b), (a, b) => a < b),
            ((a, b) => a.Le(b), (a, b) => a <= b), ((a, b) => a.Gt(b), (a, b) => a > b), ((a, b) => a.Ge(b), (a, b) => a >= b),
        ];
        foreach (var (run, reference) in ops)
        {
            // Small integers so that ties occur; a (7, 13) against a broadcast row and a transposed view.
            var a = Random([7, 13], 3, dtype, 0, 4).Narrow(1, 0, 13);
            var bs = new[] { Random([13], 4, dtype, 0, 4), Random([13, 7], 5, dtype, 0, 4).Transpose(0, 1) };
            foreach (var b in bs)
            {
                var r = run(a, b);
                Assert.Equal(DType.U8, r.DType);
                Assert.Equal(new[] { 7, 13 }, r.Shape);
                var va = Values(a);
                var vb = Values(b);
                var expected = new double[7 * 13];
                for (int i = 0; i < expected.Length; i++)
                    expected[i] = reference(va[i], Broadcast(vb, b.Shape, Unravel(i, [7, 13]))) ? 1 : 0;
                Assert.Equal(expected, Values(r));
            }
        }
    }

    [Fact]
    public void ComparisonsWithNaN()
    {
        var a = Tensor.FromArray([float.NaN, 1f]);
        var b = Tensor.FromArray([float.NaN, float.NaN]);
        Assert.Equal(new byte[] { 0, 0 }, a.Eq(b).ToArray<byte>());
        Assert.Equal(new byte[] { 1, 1 }, a.Ne(b).ToArray<byte>());
        Assert.Equal(new byte[] { 0, 0 }, a.Lt(b).ToArray<byte>());
        Assert.Equal(new byte[] { 0, 1 }, a.Gt(0.5).ToArray<byte>());
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    [InlineData(DType.I64)]
    [InlineData(DType.BF16)]
    public void WhereSelectsWithBroadcasting(DType dtype)
    {
        var cond = Random([7, 1], 1, DType.F32).Gt(Tensor.Scalar(0));      // (7, 1)
        var a = Random([13], 2, dtype, -5, 5);                              // (13)
        var b = Random([13, 7], 3, dtype, -5, 5).Transpose(0, 1);           // (7, 13), non-contiguous
        var r = Tensor.Where(cond, a, b);
        Assert.Equal(new[] { 7, 13 }, r.Shape);
        var vc = Values(cond);
        var va = Values(a);
        var vb = Values(b);
        var expected = new double[7 * 13];
        for (int i = 0; i < expected.Length; i++)
        {
            var idx = Unravel(i, [7, 13]);
            expected[i] = Broadcast(vc, [7, 1], idx) != 0 ? Broadcast(va, [13], idx) : vb[i];
        }
        Assert.Equal(expected, Values(r));
    }

    [Theory]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void HalfTypesComputeInFloat32(DType dtype)
    {
        var a = Random([7, 13], 1, dtype);
        var b = Random([13], 2, dtype);
        var sum = a + b;
        var tanh = a.Tanh();
        Assert.Equal(dtype, sum.DType);
        var va = Values(a);
        var vb = Values(b);
        var expectedSum = va.Select((v, i) => (double)Round(dtype, (float)(v + vb[i % 13]))).ToArray();
        var expectedTanh = va.Select(v => (double)Round(dtype, MathF.Tanh((float)v))).ToArray();
        Assert.Equal(expectedSum, Values(sum));
        TestUtil.AssertClose(expectedTanh, Values(tanh), 1e-2, 1e-3, "tanh");
    }

    private static float Round(DType dtype, float v) => dtype == DType.F16 ? (float)(Half)v : BFloat16.FromFloat(v).ToFloat();

    [Fact]
    public void BroadcastFailureNamesBothShapes()
    {
        var a = Tensor.Zeros([2, 3]);
        var b = Tensor.Zeros([4]);
        var e = Assert.Throws<ArgumentException>(() => a + b);
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("[4]", e.Message);
        var w = Assert.Throws<ArgumentException>(() => Tensor.Where(a.Gt(0), a, Tensor.Zeros([5])));
        Assert.Contains("[5]", w.Message);
    }

    [Fact]
    public void IntegerWithFloatIsAnErrorWhileFloatsPromote()
    {
        var e = Assert.Throws<ArgumentException>(() => Tensor.Zeros([2]) + Tensor.Zeros([2], DType.I32));
        Assert.Contains("F32", e.Message);
        Assert.Contains("I32", e.Message);
        Assert.Equal(DType.F64, (Tensor.Zeros([2]) + Tensor.Zeros([2], DType.F64)).DType); // as torch.result_type (PromotionTests)
    }

    [Fact]
    public void EmptyTensorsGiveEmptyResults()
    {
        var x = Tensor.Zeros([0, 5]);
        Assert.Equal(new[] { 0, 5 }, x.Exp().Shape);
        Assert.Equal(new[] { 0, 5 }, (x + Tensor.Ones([5])).Shape);
        Assert.Equal(new[] { 0, 5 }, x.Lt(Tensor.Ones([5])).Shape);
    }
}
