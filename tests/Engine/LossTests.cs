using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>Fused cross-entropy against a float64 reference, with ignored rows, and its gradient.</summary>
public class LossTests
{
    public static TheoryData<DType, DType, int, int> Cases()
    {
        var data = new TheoryData<DType, DType, int, int>();
        foreach (var t in Nn.FloatTypes)
            foreach (int n in new[] { 1, 5 })
                foreach (int c in new[] { 1, 3, 17, 129 })
                    data.Add(t, n % 2 == 0 ? DType.I32 : DType.I64, n, c);
        data.Add(DType.F32, DType.I32, 6, 17);
        return data;
    }

    /// <summary>Per-row log-sum-exp and the mean of lse - x[target] over rows whose target is not ignored.</summary>
    private static (double Loss, double[] Lse) Reference(double[] x, long[] targets, int c, int ignore)
    {
        var lse = new double[targets.Length];
        double sum = 0;
        int count = 0;
        for (int r = 0; r < targets.Length; r++)
        {
            double max = x.Skip(r * c).Take(c).Max();
            lse[r] = max + Math.Log(x.Skip(r * c).Take(c).Sum(v => Math.Exp(v - max)));
            if (targets[r] == ignore) continue;
            sum += lse[r] - x[r * c + targets[r]];
            count++;
        }
        return (count == 0 ? double.NaN : sum / count, lse);
    }

    /// <summary>Targets in [0, C), with every third row set to the ignore index when <paramref name="ignore"/> is true.</summary>
    private static long[] Targets(int n, int c, int seed, bool ignore, int ignoreIndex = -100)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(r => ignore && r % 3 == 1 ? ignoreIndex : (long)rng.Next(c)).ToArray();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CrossEntropyMatchesReference(DType dtype, DType idxType, int n, int c)
    {
        foreach (bool ignore in new[] { false, true })
        {
            var logits = Nn.Random([n, c], 1 + c, dtype, scale: 4);
            var targets = Targets(n, c, 2, ignore);
            logits.RequiresGrad = true; // so the node keeps lse
            var loss = Tensor.CrossEntropy(logits, Nn.Index(targets, idxType));
            var (expected, lse) = Reference(Nn.Values(logits), targets, c, -100);
            Assert.Empty(loss.Shape);
            Nn.Close([expected], loss, $"cross-entropy (ignore {ignore})");
            Nn.Close(lse, loss.Node!.Saved[0], "lse");
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void CrossEntropyOverBatchAndTimeAxesAndACustomIgnoreIndex(DType dtype)
    {
        // logits (B, T, C) = (2, 3, 5), targets (2, 3); ignore index 0 is a valid class id here.
        var logits = Nn.Random([2, 3, 5], 3, dtype, scale: 2);
        long[] targets = [4, 0, 2, 0, 1, 3];
        var loss = Tensor.CrossEntropy(logits, Nn.Index(targets, DType.I64, [2, 3]), ignoreIndex: 0);
        Nn.Close([Reference(Nn.Values(logits), targets, 5, 0).Loss], loss, "cross-entropy (B, T, C)");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void LargeLogitsDoNotOverflow(DType dtype)
    {
        var logits = Nn.Make([1000, 999, -1000, 1000, 1000, 1000], [2, 3], dtype);
        var loss = Tensor.CrossEntropy(logits, Nn.Index([1, 2], DType.I32));
        Nn.Close([Reference(Nn.Values(logits), [1, 2], 3, -100).Loss], loss, "cross-entropy of 1000s");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F64)]
    public void AllRowsIgnoredGivesNaNAndZeroGradient(DType dtype)
    {
        var logits = Nn.Random([3, 4], 4, dtype);
        var targets = Nn.Index([-100, -100, -100], DType.I64);
        logits.RequiresGrad = true;
        var loss = Tensor.CrossEntropy(logits, targets);
        Assert.True(double.IsNaN(Nn.Values(loss)[0]));
        var dlogits = Tensor.CrossEntropyBackward(Nn.Make([1], [], dtype), logits, targets, loss.Node!.Saved[0], new CrossEntropyAttrs());
        Assert.All(Nn.Values(dlogits), v => Assert.Equal(0.0, v));
    }

    [Theory]
    [InlineData(5)]
    [InlineData(-3)]
    public void TargetOutsideTheClassesThrows(long target)
    {
        var logits = Nn.Random([2, 5], 5, DType.F32);
        var e = Assert.Throws<IndexOutOfRangeException>(() => Tensor.CrossEntropy(logits, Nn.Index([0, target], DType.I64)));
        Assert.Contains($"target {target}", e.Message);
        Assert.Contains("5 classes", e.Message);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 3)]
    [InlineData(4, 17)]
    public void CrossEntropyBackwardMatchesFiniteDifferences(int n, int c)
    {
        var xv = TestUtil.RandomValues(n * c, 6 + c).Select(v => v * 3).ToArray();
        var targets = Targets(n, c, 7, ignore: n > 1);
        var t = Nn.Index(targets, DType.I64);
        const double dloss = 2.5;
        double Loss(double[] xs) => dloss * Nn.Values(Tensor.CrossEntropy(Nn.Make(xs, [n, c], DType.F64), t))[0];

        var logits = Nn.Make(xv, [n, c], DType.F64);
        logits.RequiresGrad = true;
        var loss = Tensor.CrossEntropy(logits, t);
        var dlogits = Tensor.CrossEntropyBackward(Nn.Make([dloss], [], DType.F64), logits, t, loss.Node!.Saved[0], new CrossEntropyAttrs());
        Nn.GradClose(Nn.NumericGrad(xv, Loss), dlogits, "cross-entropy dlogits");
        for (int r = 0; r < n; r++)
            if (targets[r] == -100)
                Assert.All(Nn.Values(dlogits).Skip(r * c).Take(c), v => Assert.Equal(0.0, v));
    }

    [Fact]
    public void CrossEntropyBackwardInFloat32MatchesFloat64()
    {
        int n = 300, c = 129; // several row chunks
        var xv = TestUtil.RandomValues(n * c, 8).Select(v => v * 4).ToArray();
        var targets = Targets(n, c, 9, ignore: true);
        var grads = new Dictionary<DType, double[]>();
        var losses = new Dictionary<DType, double>();
        foreach (var dt in Nn.FloatTypes)
        {
            var logits = Nn.Make(xv, [n, c], dt);
            logits.RequiresGrad = true;
            var t = Nn.Index(targets, DType.I32);
            var loss = Tensor.CrossEntropy(logits, t);
            losses[dt] = Nn.Values(loss)[0];
            grads[dt] = Nn.Values(Tensor.CrossEntropyBackward(Nn.Make([1], [], dt), logits, t, loss.Node!.Saved[0], new CrossEntropyAttrs()));
        }
        Assert.Equal(Reference(xv, targets, c, -100).Loss, losses[DType.F64], 1e-12);
        Assert.Equal(losses[DType.F64], losses[DType.F32], 1e-4);
        TestUtil.AssertClose(grads[DType.F64], grads[DType.F32], 1e-4, 1e-8, "dlogits F32 vs F64");
    }
}
