using ManagedTensor.Tests.Autograd;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// The SIMD fast paths of the CPU kernels YOLOv8 and the diffusion U-Net train through (batch and group norm, their
/// backwards) against float64 composites of plain tensor ops, at sizes that are not multiples of the vector width and
/// with a large mean next to the spread (where a float sum or a cancelling formula would lose digits).
/// </summary>
public sealed class FastCpuOpsTests
{
    /// <summary>An F32 tensor and its exact F64 copy: the same values for the kernel under test and the reference.</summary>
    private static (Tensor F32, Tensor F64) Pair(int[] shape, int seed, double scale = 1, double offset = 0)
    {
        var x = RandomTensor(shape, seed).MulScalar(scale).AddScalar(offset).To(DType.F32);
        return (x, x.To(DType.F64));
    }

    [Theory]
    [InlineData(2, 3, 13, 11, 40.0)]   // 143 values per plane: vectors and a tail of 7 floats
    [InlineData(3, 2, 1, 5, 0.5)]      // planes shorter than one vector
    public void BatchNormF32MatchesTheFloat64Composite(int n, int c, int h, int w, double offset)
    {
        var (x, x64) = Pair([n, c, h, w], 1, 3, offset);
        var (wt, w64) = Pair([c], 2, 1, 1);
        var (b, b64) = Pair([c], 3);
        var (dy, dy64) = Pair([n, c, h, w], 4);
        var def = OpRegistry.Get(BatchNormOps.BatchNorm2d);
        var expected = def.Fallback!([x64, w64, b64], new NormAttrs(1e-5));
        var (y, mean, invstd) = x.BatchNorm2d(wt, b);
        AssertClose(expected[0], y.To(DType.F64), 1e-5, 2e-5, "y");
        AssertClose(expected[1], mean.To(DType.F64), 1e-6, 1e-6, "mean");
        AssertClose(expected[2], invstd.To(DType.F64), 1e-5, 1e-6, "invstd");

        var back = OpRegistry.Get(BatchNormOps.BatchNorm2dBackward);
        var expectedBack = back.Fallback!([dy64, x64, w64, expected[1], expected[2]], null);
        var got = Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, dy, x, wt, mean, invstd);
        string[] names = ["dx", "dweight", "dbias"];
        for (int k = 0; k < 3; k++) AssertClose(expectedBack[k], got[k].To(DType.F64), 1e-4, 1e-4, names[k]);
    }

    [Theory]
    [InlineData(DType.F32, 2, 6, 5, 7, 3, true)]
    [InlineData(DType.F32, 3, 4, 1, 3, 2, false)]
    [InlineData(DType.F64, 2, 6, 3, 5, 2, true)]
    public void GroupNormBackwardKernelMatchesItsComposite(DType dtype, int n, int c, int h, int w, int groups, bool affine)
    {
        var x = RandomTensor([n, c, h, w], seed: 11).MulScalar(2).AddScalar(20);
        var dy = RandomTensor([n, c, h, w], seed: 12);
        var wt = affine ? RandomTensor([c], seed: 13).AddScalar(1) : Tensor.Empty([0]);
        var stats = Tensor.Apply(GroupNormOps.GroupNorm, new GroupNormAttrs(groups), x, Tensor.Empty([0]), Tensor.Empty([0]));
        var expected = OpRegistry.Get(GroupNormOps.GroupNormBackward).Fallback!([dy, x, wt, stats[1], stats[2]], null);
        var got = Tensor.Apply(GroupNormOps.GroupNormBackward, null, dy.To(dtype), x.To(dtype), wt.To(dtype), stats[1].To(dtype), stats[2].To(dtype));
        double tol = dtype == DType.F32 ? 1e-4 : 1e-11;
        string[] names = ["dx", "dweight", "dbias"];
        for (int k = 0; k < 3; k++) AssertClose(expected[k], got[k].To(DType.F64), tol, tol, names[k]);
        var bad = Assert.Throws<ArgumentException>(() => Tensor.Apply(GroupNormOps.GroupNormBackward, null, dy, x, wt, stats[1].Reshape(-1), stats[2]));
        Assert.Contains("mean", bad.Message);
    }

    [Fact]
    public void GroupNormFusedBackwardWithoutAffineMatchesFiniteDifferences() =>
        GradCheck.Check(t => t[0].GroupNorm(2, null, null).Square(), [RandomTensor([2, 4, 3, 3], seed: 14)]);

    [Theory]
    [InlineData(300, 16)]   // more rows than one block (128 rows of 16)
    [InlineData(37, 8)]
    [InlineData(5, 24)]
    [InlineData(3, 64)]
    public void ShortRowSoftmaxMatchesTheFloat64RowLoop(int rows, int c)
    {
        var (x, x64) = Pair([rows, c], 21, 6, -2);
        AssertClose(x64.Softmax(), x.Softmax().To(DType.F64), 1e-6, 1e-7, "softmax");
        AssertClose(x64.LogSoftmax(), x.LogSoftmax().To(DType.F64), 1e-6, 2e-6, "log-softmax");
        // a row of a large constant plus one larger value: the max must be subtracted before exp (no overflow)
        var big = Tensor.FromArray(Enumerable.Range(0, 16).Select(i => i == 11 ? 1000f : 990f).ToArray(), [1, 16]);
        var p = big.Softmax().ToArray<float>();
        Assert.Equal(1 / (1 + 15 * Math.Exp(-10)), p[11], 1e-6);
    }

    [Theory]
    [InlineData(DType.F32, 37, 23)]   // 1,702 elements: rows of 37 with stride 23 gathered piece by piece
    [InlineData(DType.F64, 37, 23)]
    [InlineData(DType.F32, 67, 41)]   // 5,494 elements: copied dense by the tiled transpose first
    public void UnaryOpsOnATransposedViewMatchTheDenseInput(DType dtype, int rows, int cols)
    {
        // (2, rows, cols) viewed as (2, cols, rows)
        var dense = RandomTensor([2, rows, cols], seed: 31).MulScalar(3).To(dtype);
        var view = dense.Transpose(1, 2);
        var copy = view.Contiguous();
        Assert.False(view.IsContiguous);
        foreach (var (name, f) in new (string, Func<Tensor, Tensor>)[]
                 { ("sigmoid", t => t.Sigmoid()), ("relu", t => t.Relu()), ("abs", t => t.Abs()), ("log", t => t.Abs().AddScalar(0.1).Log()), ("exp", t => t.Exp()), ("gelu-tanh", t => t.GeluTanh()) })
            AssertClose(f(copy), f(view), 1e-7, 1e-7, name);
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void BinaryOpsWithATransposedOperandMatchTheDenseOperand(DType dtype)
    {
        var a = RandomTensor([2, 23, 37], seed: 32).To(dtype);
        var bt = RandomTensor([2, 37, 23], seed: 33).To(dtype).Transpose(1, 2);   // strided, 37 per row
        var b = bt.Contiguous();
        AssertClose(a * b, a * bt, 0, 0, "a * b^T");
        AssertClose(b * a, bt * a, 0, 0, "b^T * a");
        AssertClose(a - b, a - bt, 0, 0, "a - b^T");
        AssertClose(b.Div(a.AddScalar(3)), bt.Div(a.AddScalar(3)), 0, 0, "b^T / a");
    }

    [Theory]
    [InlineData(DType.F32, 5, 1, 2)]   // YOLOv8's SPPF pool
    [InlineData(DType.F64, 3, 2, 1)]
    [InlineData(DType.F32, 2, 3, 0)]   // windows that skip input rows and columns
    public void SeparableMaxPoolKeepsTheFirstMaximumOfEachWindow(DType dtype, int k, int stride, int pad)
    {
        // values in {0, 1, 2}: every window has ties, so the argmax (seen through the gradient) must be the first in
        // row-major window order, as in PyTorch
        int h = 7, w = 9;
        var v = RandomValues(2 * h * w, 41).Select(r => Math.Floor(Math.Abs(r) * 3 % 3)).ToArray();
        var x = Tensor.FromArray(v, [1, 2, h, w]).To(dtype);
        x.RequiresGrad = true;
        var y = x.MaxPool2d(k, stride, pad);
        y.Sum().Backward();
        int oh = y.Shape[2], ow = y.Shape[3];
        var (ey, edx) = (new double[2 * oh * ow], new double[v.Length]);
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    double max = double.NegativeInfinity;
                    int best = -1;
                    for (int ih = Math.Max(i * stride - pad, 0); ih < Math.Min(i * stride - pad + k, h); ih++)
                        for (int iw = Math.Max(j * stride - pad, 0); iw < Math.Min(j * stride - pad + k, w); iw++)
                            if (best < 0 || v[(c * h + ih) * w + iw] > max) (max, best) = (v[(c * h + ih) * w + iw], (c * h + ih) * w + iw);
                    ey[(c * oh + i) * ow + j] = max;
                    edx[best] += 1;
                }
        AssertClose(ey, y.ToDoubleArray(), 0, 0, "y");
        AssertClose(edx, x.Grad!.ToDoubleArray(), 0, 0, "argmax");
    }

    [Fact]
    public void FloatSigmoidSiluAndSiluGradientMatchFloat64AcrossTheRange()
    {
        // 1,003 values from -100 to 100 (a tail after the last vector of 8), where exp over- and underflows at the ends
        var v = Enumerable.Range(0, 1003).Select(i => -100 + 200.0 * i / 1002).ToArray();
        var x = Tensor.FromArray(v.Select(d => (float)d).ToArray(), [1003]);
        var x64 = x.To(DType.F64);
        var dy = RandomTensor([1003], seed: 51).To(DType.F32);
        AssertClose(x64.Sigmoid(), x.Sigmoid().To(DType.F64), 1e-6, 1e-30, "sigmoid");
        AssertClose(x64.Silu(), x.Silu().To(DType.F64), 1e-6, 1e-30, "silu");
        var expected = Tensor.Apply(SiluBackwardOps.SiluBackward, null, dy.To(DType.F64), x64)[0];
        AssertClose(expected, Tensor.Apply(SiluBackwardOps.SiluBackward, null, dy, x)[0].To(DType.F64), 1e-6, 1e-30, "silu gradient");
        var nan = Tensor.FromArray(Enumerable.Repeat(float.NaN, 9).ToArray(), [9]);
        Assert.All(nan.Sigmoid().ToArray<float>(), f => Assert.True(float.IsNaN(f)));
        Assert.All(nan.Silu().ToArray<float>(), f => Assert.True(float.IsNaN(f)));
    }
}
