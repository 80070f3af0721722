using ManagedTensor.Tests.Autograd;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Attention;

/// <summary>
/// The fused CPU attention op (forward, lse and gradients) against the plain composition of matmul,
/// mask and softmax (<see cref="AttentionReference"/>), at odd sizes: T and S not multiples of the tiles
/// (32 queries, 64 keys), T != S, one query (decoding), GQA ratios 1, 2 and 4, causal and full. Then
/// finite differences in float64 and the dropout mask.
/// </summary>
public class AttentionTests
{
    /// <summary>(B, H, Hkv, T, S, D, causal). Sizes pick both the direct dq path and the split-keys path.</summary>
    public static TheoryData<int, int, int, int, int, int, bool> Shapes()
    {
        var data = new TheoryData<int, int, int, int, int, int, bool>();
        foreach (bool causal in new[] { true, false })
        {
            data.Add(1, 1, 1, 1, 1, 1, causal);
            data.Add(2, 3, 3, 5, 5, 7, causal);     // GQA 1, tiny
            data.Add(1, 4, 2, 37, 37, 16, causal);  // GQA 2, T past one query tile
            data.Add(1, 4, 1, 70, 70, 16, causal);  // GQA 4, three query tiles, two key tiles, split parts
            data.Add(2, 2, 1, 9, 67, 8, causal);    // T < S: a chunk of new tokens against a longer cache
            data.Add(2, 4, 2, 1, 69, 16, causal);   // one query against a cache (decode path)
            data.Add(8, 4, 4, 33, 33, 8, causal);   // 32 (batch, kv head) groups: one part each
        }
        return data;
    }

    private static (Tensor Q, Tensor K, Tensor V) Inputs(int b, int h, int hkv, int t, int s, int d, DType dtype, int seed = 1)
        => (RandomTensor([b, h, t, d], seed, dtype), RandomTensor([b, hkv, s, d], seed + 1, dtype), RandomTensor([b, hkv, s, d], seed + 2, dtype));

    private static (double Rtol, double Atol) Tol(DType t) => t == DType.F32 ? (2e-4, 2e-5) : (1e-10, 1e-12);

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Forward_and_gradients_match_the_composition(int b, int h, int hkv, int t, int s, int d, bool causal)
    {
        foreach (var dtype in new[] { DType.F32, DType.F64 })
        {
            var (q, k, v) = Inputs(b, h, hkv, t, s, d, dtype);
            double scale = 1 / Math.Sqrt(d);
            var (rtol, atol) = Tol(dtype);
            string what = $"{dtype} B{b} H{h}/{hkv} T{t} S{s} D{d} causal={causal}";

            // Reference in float64 from the same values.
            var (q64, k64, v64) = (Leaf(q.To(DType.F64)), Leaf(k.To(DType.F64)), Leaf(v.To(DType.F64)));
            var expected = AttentionReference.Forward(q64, k64, v64, causal, scale);
            var weights = RandomTensor(expected.Shape, 99, DType.F64);
            (expected * weights).Sum().Backward();

            var (qf, kf, vf) = (Leaf(q), Leaf(k), Leaf(v));
            var actual = Tensor.Attention(qf, kf, vf, causal);
            AssertClose(expected.Detach().ToDoubleArray(), actual.ToDoubleArray(), rtol, atol, $"out {what}");
            var lse = actual.Node!.Saved[0];
            Assert.Equal(new[] { b, h, t }, lse.Shape);
            Assert.Equal(dtype == DType.F64 ? DType.F64 : DType.F32, lse.DType);
            AssertClose(AttentionReference.Lse(q, k, causal, scale), lse.ToDoubleArray(), rtol, atol, $"lse {what}");

            (actual * weights.To(dtype)).Sum().Backward();
            AssertClose(q64.Grad!.ToDoubleArray(), qf.Grad!.ToDoubleArray(), rtol, atol, $"dq {what}");
            AssertClose(k64.Grad!.ToDoubleArray(), kf.Grad!.ToDoubleArray(), rtol, atol, $"dk {what}");
            AssertClose(v64.Grad!.ToDoubleArray(), vf.Grad!.ToDoubleArray(), rtol, atol, $"dv {what}");
        }
    }

    private static Tensor Leaf(Tensor t)
    {
        var leaf = t.Clone().Detach();
        leaf.RequiresGrad = true;
        return leaf;
    }

    [Fact]
    public void Explicit_scale_is_used()
    {
        var (q, k, v) = Inputs(1, 2, 1, 6, 6, 4, DType.F64, seed: 5);
        var expected = AttentionReference.Forward(q, k, v, causal: true, scale: 0.7);
        AssertClose(expected, Tensor.Attention(q, k, v, causal: true, scale: 0.7), 1e-10, 1e-12, "scale 0.7");
    }

    [Fact]
    public void Query_that_sees_no_key_gives_zero_output_and_gradient()
    {
        // Causal with T = 6 > S = 4: query i sees keys j <= i - 2, so rows 0 and 1 see nothing.
        var (q, k, v) = Inputs(1, 2, 2, 6, 4, 3, DType.F64, seed: 7);
        var (qf, kf, vf) = (Leaf(q), Leaf(k), Leaf(v));
        var output = Tensor.Attention(qf, kf, vf, causal: true);
        var lse = output.Node!.Saved[0].ToDoubleArray();
        var o = output.ToDoubleArray();
        for (int head = 0; head < 2; head++)
            for (int i = 0; i < 2; i++)
            {
                Assert.Equal(double.PositiveInfinity, lse[head * 6 + i]);
                for (int c = 0; c < 3; c++) Assert.Equal(0.0, o[(head * 6 + i) * 3 + c]);
            }
        output.Sum().Backward();
        var dq = qf.Grad!.ToDoubleArray();
        Assert.All(dq, x => Assert.False(double.IsNaN(x)));
        for (int head = 0; head < 2; head++)
            for (int c = 0; c < 2 * 3; c++) Assert.Equal(0.0, dq[head * 18 + c]);
        // The rows that do see keys agree with the composition on those rows.
        var expected = AttentionReference.Forward(q, k, v, causal: true, scale: 1 / Math.Sqrt(3)).ToDoubleArray();
        for (int head = 0; head < 2; head++)
            for (int x = 2 * 3; x < 6 * 3; x++)
                Assert.Equal(expected[head * 18 + x], o[head * 18 + x], 1e-10);
    }

    // ---- finite differences (float64) ----

    [Theory]
    [InlineData(1, 2, 1, 5, 6, 3, true)]
    [InlineData(1, 4, 2, 4, 4, 3, false)]
    [InlineData(2, 2, 2, 3, 7, 2, true)]
    public void Gradients_match_finite_differences(int b, int h, int hkv, int t, int s, int d, bool causal)
    {
        var (q, k, v) = Inputs(b, h, hkv, t, s, d, DType.F64, seed: 11);
        GradCheck.Check(xs => Tensor.Attention(xs[0], xs[1], xs[2], causal), [q, k, v]);
    }

    [Fact]
    public void Gradients_with_dropout_match_finite_differences()
    {
        var (q, k, v) = Inputs(1, 4, 2, 5, 6, 3, DType.F64, seed: 13);
        // A fresh generator per call: every evaluation draws the same mask.
        GradCheck.Check(xs => Tensor.Attention(xs[0], xs[1], xs[2], causal: true, dropoutP: 0.3, gen: new Generator(42, 1000)), [q, k, v]);
    }

    // ---- dropout ----

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Dropout_uses_the_documented_mask_in_forward_and_backward(bool causal)
    {
        const int b = 2, h = 4, hkv = 2, t = 35, s = 67, d = 8;
        const double p = 0.25;
        var (q, k, v) = Inputs(b, h, hkv, t, s, d, DType.F64, seed: 17);
        var gen = new Generator(7, 12345);
        var (qf, kf, vf) = (Leaf(q), Leaf(k), Leaf(v));
        var actual = Tensor.Attention(qf, kf, vf, causal, dropoutP: p, gen: gen);
        Assert.Equal(12345UL + (ulong)(b * h * t * s), gen.Offset); // one counter per (b, h, i, j)

        var keep = AttentionReference.KeepMask(b, h, t, s, p, 7, 12345, DType.F64);
        var (q64, k64, v64) = (Leaf(q), Leaf(k), Leaf(v));
        var expected = AttentionReference.Forward(q64, k64, v64, causal, 1 / Math.Sqrt(d), keep);
        AssertClose(expected.Detach(), actual.Detach(), 1e-10, 1e-12, "out with dropout");

        var weights = RandomTensor(expected.Shape, 3, DType.F64);
        (expected * weights).Sum().Backward();
        (actual * weights).Sum().Backward();
        AssertClose(q64.Grad!, qf.Grad!, 1e-10, 1e-12, "dq with dropout");
        AssertClose(k64.Grad!, kf.Grad!, 1e-10, 1e-12, "dk with dropout");
        AssertClose(v64.Grad!, vf.Grad!, 1e-10, 1e-12, "dv with dropout");
    }

    [Fact]
    public void Dropout_keeps_the_expected_fraction_and_scales_by_one_over_keep()
    {
        // q = 0 gives uniform weights 1/S; v = identity (D = S) then reads the mask out:
        // out[b, h, i, j] = keep(b, h, i, j) / ((1 - p) S).
        const int b = 1, h = 4, t = 64, s = 64;
        const double p = 0.3;
        var q = Tensor.Zeros([b, h, t, s], DType.F32);
        var eye = new float[s * s];
        for (int j = 0; j < s; j++) eye[j * s + j] = 1;
        var v = Tensor.FromArray(eye, [1, 1, s, s]);
        var output = Tensor.Attention(q, v, v, causal: false, dropoutP: p, gen: new Generator(3)).ToDoubleArray();
        int kept = 0;
        foreach (double x in output)
        {
            double m = x * (1 - p) * s;
            Assert.True(Math.Abs(m) < 1e-5 || Math.Abs(m - 1) < 1e-5, $"entry {x} is neither 0 nor 1/((1-p)S)");
            if (m > 0.5) kept++;
        }
        double fraction = (double)kept / output.Length; // 16384 draws: standard deviation 0.0036
        Assert.InRange(fraction, 1 - p - 0.02, 1 - p + 0.02);
        var again = Tensor.Attention(q, v, v, causal: false, dropoutP: p, gen: new Generator(3)).ToDoubleArray();
        Assert.Equal(output, again);
        var other = Tensor.Attention(q, v, v, causal: false, dropoutP: p, gen: new Generator(4)).ToDoubleArray();
        Assert.NotEqual(output, other);
    }

    // ---- errors ----

    [Fact]
    public void Bad_shapes_are_named()
    {
        var q = Tensor.Zeros([1, 3, 4, 8]);
        var k = Tensor.Zeros([1, 2, 5, 8]);
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Attention(q, k, k, causal: true));
        Assert.Contains("multiple", ex.Message);
        Assert.Contains("[1, 3, 4, 8]", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Tensor.Attention(q, Tensor.Zeros([1, 3, 5, 7]), Tensor.Zeros([1, 3, 5, 7]), causal: true));
        Assert.Contains("head dim", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Tensor.Attention(q, Tensor.Zeros([1, 3, 5, 8]), Tensor.Zeros([1, 3, 6, 8]), causal: true));
        Assert.Contains("same shape", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Tensor.Attention(Tensor.Zeros([3, 4, 8]), k, k, causal: true));
        Assert.Contains("4-D", ex.Message);
        Assert.Throws<ArgumentException>(() => Tensor.Attention(q, q, q, causal: true, dropoutP: 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Attention(q, q, q, causal: true, dropoutP: 1, gen: new Generator(1)));
    }

    [Fact]
    public void Non_contiguous_inputs_are_accepted()
    {
        // (B, T, H, D) transposed to (B, H, T, D), as a model splits heads.
        var x = RandomTensor([2, 7, 4, 8], 21);
        var q = x.Transpose(1, 2);
        var expected = AttentionReference.Forward(q, q, q, causal: true, scale: 1 / Math.Sqrt(8));
        AssertClose(expected, Tensor.Attention(q, q, q, causal: true), 1e-10, 1e-12, "transposed inputs");
    }
}

/// <summary>
/// k and v as a KV cache hands them over: (B, Hkv, capacity, D) buffers narrowed to the S filled positions.
/// The op reads them in place (no dense copy of the cache per call) and gives the dense result, forward and
/// backward, on the decode path (T = 1) and the tiled path (a chunk of new tokens against the cache).
/// </summary>
public class AttentionStridedKvTests
{
    [Theory]
    [InlineData(1, 4, 2, 1, 37, 16, 50, true)]   // decode, GQA 2
    [InlineData(2, 2, 1, 5, 70, 8, 90, true)]    // a chunk of 5 new tokens, tiles of keys
    [InlineData(1, 3, 3, 4, 9, 7, 12, false)]    // full attention, odd head dim
    public void Narrowed_cache_views_give_the_dense_result(int b, int h, int hkv, int t, int s, int d, int capacity, bool causal)
    {
        foreach (var dtype in new[] { DType.F32, DType.F64 })
        {
            var q = TestUtil.RandomTensor([b, h, t, d], 1, dtype);
            var kBuf = TestUtil.RandomTensor([b, hkv, capacity, d], 2, dtype);
            var vBuf = TestUtil.RandomTensor([b, hkv, capacity, d], 3, dtype);
            var (k, v) = (kBuf.Narrow(2, 0, s), vBuf.Narrow(2, 0, s));
            Assert.False(k.IsContiguous);
            var expected = Tensor.Attention(q, k.Contiguous(), v.Contiguous(), causal);
            var actual = Tensor.Attention(q, k, v, causal);
            TestUtil.AssertClose(expected.ToDoubleArray(), actual.ToDoubleArray(), 1e-6, 1e-7, $"{dtype} T{t} S{s}");

            // Gradients flow back into the views (the backward takes dense copies).
            var (kl, vl) = (kBuf.Clone().Detach(), vBuf.Clone().Detach());
            kl.RequiresGrad = vl.RequiresGrad = true;
            var w = TestUtil.RandomTensor([b, h, t, d], 4, dtype);
            (Tensor.Attention(q, kl.Narrow(2, 0, s), vl.Narrow(2, 0, s), causal) * w).Sum().Backward();
            var (kd, vd) = (k.Contiguous().Detach(), v.Contiguous().Detach());
            kd.RequiresGrad = vd.RequiresGrad = true;
            (Tensor.Attention(q, kd, vd, causal) * w).Sum().Backward();
            TestUtil.AssertClose(kd.Grad!.ToDoubleArray(), kl.Grad!.Narrow(2, 0, s).ToDoubleArray(), 1e-6, 1e-7, "dk");
            Assert.Equal(0, kl.Grad!.Narrow(2, s, capacity - s).Abs().Sum().Item()); // positions past S get nothing
            TestUtil.AssertClose(vd.Grad!.ToDoubleArray(), vl.Grad!.Narrow(2, 0, s).ToDoubleArray(), 1e-6, 1e-7, "dv");
        }
    }

    [Fact]
    public void A_decode_step_does_not_copy_the_cache()
    {
        // 4 kv heads x 4096 positions x 64 floats: 4 MiB of keys and as much of values.
        var q = TestUtil.RandomTensor([1, 8, 1, 64], 1, DType.F32);
        var kBuf = TestUtil.RandomTensor([1, 4, 8192, 64], 2, DType.F32);
        var vBuf = TestUtil.RandomTensor([1, 4, 8192, 64], 3, DType.F32);
        var (k, v) = (kBuf.Narrow(2, 0, 4096), vBuf.Narrow(2, 0, 4096));
        using var noGrad = GradMode.NoGrad();
        for (int i = 0; i < 3; i++) Tensor.Attention(q, k, v, causal: true); // warm up
        // This thread's allocations only: the process's total counts whatever tests run alongside (1.3 MB seen under load).
        // A copy of the cache would be allocated here, where the op allocates its tensors.
        long before = GC.GetAllocatedBytesForCurrentThread();
        Tensor.Attention(q, k, v, causal: true);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1 << 20, $"a decode step allocated {allocated} bytes; one copy of the keys is {4 << 20}");
    }
}
