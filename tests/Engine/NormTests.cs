using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>Softmax, log-softmax, layer norm and RMS norm (forward and backward) against float64 references.</summary>
public class NormTests
{
    public static TheoryData<DType, int, int> Shapes()
    {
        var data = new TheoryData<DType, int, int>();
        foreach (var t in Nn.FloatTypes)
            foreach (int rows in new[] { 1, 5 })
                foreach (int c in new[] { 1, 3, 17, 48, 129 }) // 48: float rows in LayerNormRows' fused passes
                    data.Add(t, rows, c);
        return data;
    }

    // ---- float64 references, one row at a time ----

    private static double[] RefSoftmax(double[] x, int c, bool log)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / c; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < c; j++) max = Math.Max(max, x[r * c + j]);
            for (int j = 0; j < c; j++) sum += Math.Exp(x[r * c + j] - max);
            for (int j = 0; j < c; j++)
                y[r * c + j] = log ? x[r * c + j] - max - Math.Log(sum) : Math.Exp(x[r * c + j] - max) / sum;
        }
        return y;
    }

    /// <summary>Layer norm (subtractMean) or RMS norm: y, mean (0 for RMS), rstd.</summary>
    private static (double[] Y, double[] Mean, double[] Rstd) RefNorm(double[] x, int c, double[]? w, double[]? b, double eps, bool subtractMean)
    {
        int rows = x.Length / c;
        var y = new double[x.Length];
        var mean = new double[rows];
        var rstd = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double m = 0, v = 0;
            if (subtractMean)
            {
                for (int j = 0; j < c; j++) m += x[r * c + j];
                m /= c;
            }
            for (int j = 0; j < c; j++) v += (x[r * c + j] - m) * (x[r * c + j] - m);
            double rs = 1 / Math.Sqrt(v / c + eps);
            for (int j = 0; j < c; j++)
                y[r * c + j] = (x[r * c + j] - m) * rs * (w?[j] ?? 1) + (b?[j] ?? 0);
            mean[r] = m;
            rstd[r] = rs;
        }
        return (y, mean, rstd);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SoftmaxAndLogSoftmaxMatchReference(DType dtype, int rows, int c)
    {
        var x = Nn.Random([rows, c], 1 + c, dtype, scale: 5);
        var xv = Nn.Values(x);
        Nn.Close(RefSoftmax(xv, c, log: false), x.Softmax(), "softmax");
        Nn.Close(RefSoftmax(xv, c, log: true), x.LogSoftmax(), "log-softmax");
        var y = Nn.Values(x.Softmax());
        for (int r = 0; r < rows; r++)
            Assert.Equal(1.0, y.Skip(r * c).Take(c).Sum(), dtype == DType.F32 ? 1e-5 : 1e-12);
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void SoftmaxOfLargeInputsDoesNotOverflow(DType dtype)
    {
        var x = Nn.Make([1000, 999, 998, -1000, 1000, 1000], [2, 3], dtype);
        var y = Nn.Values(x.Softmax());
        Assert.All(y, v => Assert.True(double.IsFinite(v), $"softmax gave {v}"));
        Nn.Close(RefSoftmax(Nn.Values(x), 3, log: false), x.Softmax(), "softmax of 1000s");
        Nn.Close(RefSoftmax(Nn.Values(x), 3, log: true), x.LogSoftmax(), "log-softmax of 1000s");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void SoftmaxOverALeadingAxisOfA3dTensor(DType dtype)
    {
        // (2, 3, 4) rows of 4 along the last axis: the front end flattens the leading axes.
        var x = Nn.Random([2, 3, 4], 7, dtype, scale: 3);
        Nn.Close(RefSoftmax(Nn.Values(x), 4, log: false), x.Softmax(-1), "softmax 3-D");
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void LayerNormMatchesReferenceWithAndWithoutAffine(DType dtype, int rows, int c)
    {
        var x = Nn.Random([rows, c], 11 + c, dtype, scale: 3);
        var w = Nn.Random([c], 12, dtype);
        var b = Nn.Random([c], 13, dtype);
        var xv = Nn.Values(x);
        foreach (var (wt, bt) in new[] { (w, b), (null, null), (w, null), ((Tensor?)null, (Tensor?)b) })
        {
            var (y, mean, rstd) = RefNorm(xv, c, wt is null ? null : Nn.Values(wt), bt is null ? null : Nn.Values(bt), 1e-5, subtractMean: true);
            x.RequiresGrad = true; // so the node keeps mean and rstd
            var yt = x.LayerNorm(wt, bt, 1e-5);
            string what = $"layer norm (weight {wt is not null}, bias {bt is not null})";
            Nn.Close(y, yt, what);
            Nn.Close(mean, yt.Node!.Saved[0], what + " mean");
            // rstd = 1/sqrt(var + eps) grows large for C = 1 (var = 0): compare relatively only.
            Nn.Close(rstd, yt.Node!.Saved[1], what + " rstd");
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void RmsNormMatchesReference(DType dtype, int rows, int c)
    {
        var x = Nn.Random([rows, c], 21 + c, dtype, scale: 3);
        var w = Nn.Random([c], 22, dtype);
        foreach (var wt in new[] { w, null })
        {
            var (y, _, rstd) = RefNorm(Nn.Values(x), c, wt is null ? null : Nn.Values(wt), null, 1e-6, subtractMean: false);
            x.RequiresGrad = true;
            var yt = x.RmsNorm(wt, 1e-6);
            Nn.Close(y, yt, $"rms norm (weight {wt is not null})");
            Nn.Close(rstd, yt.Node!.Saved[0], "rms norm rstd");
        }
    }

    [Theory]
    [InlineData(3, 5, true, true)]
    [InlineData(2, 1, true, true)]
    [InlineData(4, 7, false, false)]
    public void LayerNormBackwardMatchesFiniteDifferences(int rows, int c, bool affine, bool nonzeroMean)
    {
        var xv = TestUtil.RandomValues(rows * c, 31).Select(v => v * 2 + (nonzeroMean ? 0.7 : 0)).ToArray();
        var wv = TestUtil.RandomValues(c, 32).Select(v => v + 1.5).ToArray();
        var bv = TestUtil.RandomValues(c, 33);
        var g = TestUtil.RandomValues(rows * c, 34);
        const double eps = 1e-5;

        double Loss(double[] xs, double[] ws, double[] bs)
            => Nn.Project(Nn.Make(xs, [rows, c], DType.F64).LayerNorm(affine ? Nn.Make(ws, [c], DType.F64) : null, affine ? Nn.Make(bs, [c], DType.F64) : null, eps), g);

        var x = Nn.Make(xv, [rows, c], DType.F64);
        x.RequiresGrad = true;
        var weight = affine ? Nn.Make(wv, [c], DType.F64) : null;
        var y = x.LayerNorm(weight, affine ? Nn.Make(bv, [c], DType.F64) : null, eps);
        var node = y.Node!;
        var (dx, dw, db) = Tensor.LayerNormBackward(Nn.Make(g, [rows, c], DType.F64), x, node.Inputs[1], node.Saved[0], node.Saved[1], new NormAttrs(eps));

        Nn.GradClose(Nn.NumericGrad(xv, xs => Loss(xs, wv, bv)), dx, "layer norm dx");
        if (affine)
        {
            Nn.GradClose(Nn.NumericGrad(wv, ws => Loss(xv, ws, bv)), dw, "layer norm dweight");
            Nn.GradClose(Nn.NumericGrad(bv, bs => Loss(xv, wv, bs)), db, "layer norm dbias");
        }
        else
        {
            Assert.Equal(0, dw.Numel);
            Assert.Equal(0, db.Numel);
        }
    }

    [Theory]
    [InlineData(3, 5, true)]
    [InlineData(2, 1, true)]
    [InlineData(4, 7, false)]
    public void RmsNormBackwardMatchesFiniteDifferences(int rows, int c, bool hasWeight)
    {
        var xv = TestUtil.RandomValues(rows * c, 41).Select(v => v * 2 + 0.3).ToArray();
        var wv = TestUtil.RandomValues(c, 42).Select(v => v + 1.5).ToArray();
        var g = TestUtil.RandomValues(rows * c, 43);
        const double eps = 1e-6;

        double Loss(double[] xs, double[] ws)
            => Nn.Project(Nn.Make(xs, [rows, c], DType.F64).RmsNorm(hasWeight ? Nn.Make(ws, [c], DType.F64) : null, eps), g);

        var x = Nn.Make(xv, [rows, c], DType.F64);
        x.RequiresGrad = true;
        var y = x.RmsNorm(hasWeight ? Nn.Make(wv, [c], DType.F64) : null, eps);
        var (dx, dw) = Tensor.RmsNormBackward(Nn.Make(g, [rows, c], DType.F64), x, y.Node!.Inputs[1], y.Node!.Saved[0], new NormAttrs(eps));

        Nn.GradClose(Nn.NumericGrad(xv, xs => Loss(xs, wv)), dx, "rms norm dx");
        if (hasWeight) Nn.GradClose(Nn.NumericGrad(wv, ws => Loss(xv, ws)), dw, "rms norm dweight");
        else Assert.Equal(0, dw.Numel);
    }

    [Theory]
    [InlineData(5, 17)]
    [InlineData(300, 129)] // enough rows to split dweight/dbias over several chunks
    [InlineData(300, 128)] // the same through LayerNormRows' fused float passes
    public void NormBackwardInFloat32MatchesFloat64(int rows, int c)
    {
        var xv = TestUtil.RandomValues(rows * c, 51);
        var wv = TestUtil.RandomValues(c, 52);
        var bv = TestUtil.RandomValues(c, 53);
        var g = TestUtil.RandomValues(rows * c, 54);
        var results = new Dictionary<DType, double[][]>();
        foreach (var t in Nn.FloatTypes)
        {
            var x = Nn.Make(xv, [rows, c], t);
            x.RequiresGrad = true;
            var ln = x.LayerNorm(Nn.Make(wv, [c], t), Nn.Make(bv, [c], t));
            var (dx, dw, db) = Tensor.LayerNormBackward(Nn.Make(g, [rows, c], t), x, ln.Node!.Inputs[1], ln.Node.Saved[0], ln.Node.Saved[1], new NormAttrs(1e-5));
            var rms = x.RmsNorm(Nn.Make(wv, [c], t));
            var (rdx, rdw) = Tensor.RmsNormBackward(Nn.Make(g, [rows, c], t), x, rms.Node!.Inputs[1], rms.Node.Saved[0], new NormAttrs(1e-5));
            results[t] = [Nn.Values(dx), Nn.Values(dw), Nn.Values(db), Nn.Values(rdx), Nn.Values(rdw)];
        }
        string[] names = ["ln dx", "ln dw", "ln db", "rms dx", "rms dw"];
        for (int i = 0; i < names.Length; i++)
            TestUtil.AssertClose(results[DType.F64][i], results[DType.F32][i], 1e-4, 1e-4, names[i]);
    }

    [Fact]
    public void LayerNormBackwardIsDeterministic()
    {
        int rows = 500, c = 64;
        var x = Nn.Random([rows, c], 61, DType.F32);
        x.RequiresGrad = true;
        var w = Nn.Random([c], 62, DType.F32);
        var y = x.LayerNorm(w, Nn.Random([c], 63, DType.F32));
        var dy = Nn.Random([rows, c], 64, DType.F32);
        var first = Tensor.LayerNormBackward(dy, x, w, y.Node!.Saved[0], y.Node.Saved[1], new NormAttrs(1e-5));
        for (int i = 0; i < 3; i++)
        {
            var again = Tensor.LayerNormBackward(dy, x, w, y.Node.Saved[0], y.Node.Saved[1], new NormAttrs(1e-5));
            Assert.Equal(first.Dweight.ToArray<float>(), again.Dweight.ToArray<float>());
            Assert.Equal(first.Dbias.ToArray<float>(), again.Dbias.ToArray<float>());
        }
    }

    [Fact]
    public void EmptyRowsAndEmptyBatchesAreNoOps()
    {
        var none = Tensor.Empty([0, 4], DType.F32);
        Assert.Equal([0, 4], none.LayerNorm(null, null).Shape);
        Assert.Equal([0, 4], none.RmsNorm(null).Shape);
        var zeroWidth = Tensor.Empty([3, 0], DType.F64);
        Assert.Equal([3, 0], zeroWidth.LayerNorm(null, null).Shape);
        Assert.Equal([3, 0], zeroWidth.Softmax().Shape);
    }
}
