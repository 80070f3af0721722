using ManagedTensor.Tests.Autograd;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Attention;

/// <summary>
/// Attention from a packed (B, T, 3C) projection (<see cref="Tensor.QkvAttention"/>) against an independent
/// float64 reference (matmul, mask, softmax on q, k, v split out of qkv: <see cref="AttentionReference"/>),
/// against the (B, H, T, D) path it replaces (split, <see cref="Tensor.Attention"/>, transpose back) with and
/// without dropout, by finite differences in float64, and its errors.
/// </summary>
public class QkvAttentionTests
{
    /// <summary>(B, T, H, D, causal): tiny, past one query tile, several key tiles with split parts, 32 groups.</summary>
    public static TheoryData<int, int, int, int, bool> Shapes()
    {
        var data = new TheoryData<int, int, int, int, bool>();
        foreach (bool causal in new[] { true, false })
        {
            data.Add(1, 1, 1, 1, causal);
            data.Add(2, 5, 3, 7, causal);
            data.Add(1, 37, 4, 16, causal);
            data.Add(1, 70, 1, 16, causal);
            data.Add(8, 33, 4, 8, causal);
            data.Add(2, 64, 2, 32, causal); // nanoGPT's CPU head size: full 8 x 8 key transposes, 32-wide register tiles
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Output_and_gradient_match_the_reference_and_the_split_path(int b, int t, int h, int d, bool causal)
    {
        foreach (var dtype in new[] { DType.F32, DType.F64 })
        {
            int c = h * d;
            string what = $"{dtype} B{b} T{t} H{h} D{d} causal={causal}";
            var (rtol, atol) = dtype == DType.F64 ? (1e-10, 1e-12) : (2e-4, 2e-5);
            var qkv = RandomTensor([b, t, 3 * c], seed: 21, dtype);
            var weights = RandomTensor([b, t, c], seed: 22, dtype);

            var fused = Leaf(qkv);
            var y = Tensor.QkvAttention(fused, h, causal);
            Assert.Equal(new[] { b, t, c }, y.Shape);
            (y * weights).Sum().Backward();

            // Independent reference in float64 on q, k, v split out of the same values.
            var ref64 = Leaf(qkv.To(DType.F64));
            var (q, k, v) = (Heads(ref64, 0, h), Heads(ref64, 1, h), Heads(ref64, 2, h));
            var expected = Merge(AttentionReference.Forward(q, k, v, causal, 1 / Math.Sqrt(d)));
            (expected * weights.To(DType.F64)).Sum().Backward();
            AssertClose(expected.Detach().ToDoubleArray(), y.ToDoubleArray(), rtol, atol, $"y {what}");
            AssertClose(ref64.Grad!.ToDoubleArray(), fused.Grad!.ToDoubleArray(), rtol, atol, $"dqkv {what}");

            // The (B, H, T, D) path this op replaces: same kernel arithmetic, so the same values.
            var split = Leaf(qkv);
            var ySplit = Merge(Tensor.Attention(Heads(split, 0, h), Heads(split, 1, h), Heads(split, 2, h), causal));
            (ySplit * weights).Sum().Backward();
            AssertClose(ySplit.ToDoubleArray(), y.ToDoubleArray(), 1e-6, 1e-7, $"y vs split path {what}");
            AssertClose(split.Grad!.ToDoubleArray(), fused.Grad!.ToDoubleArray(), 1e-6, 1e-7, $"dqkv vs split path {what}");
        }
    }

    [Fact]
    public void Dropout_draws_the_same_mask_as_the_split_path()
    {
        var qkv = RandomTensor([2, 9, 3 * 2 * 4], seed: 31, DType.F64);
        var weights = RandomTensor([2, 9, 8], seed: 32, DType.F64);
        var fused = Leaf(qkv);
        var gen1 = new Generator(7, 100);
        var y = Tensor.QkvAttention(fused, 2, causal: true, dropoutP: 0.3, gen: gen1);
        (y * weights).Sum().Backward();

        var split = Leaf(qkv);
        var gen2 = new Generator(7, 100);
        var ySplit = Merge(Tensor.Attention(Heads(split, 0, 2), Heads(split, 1, 2), Heads(split, 2, 2), causal: true, dropoutP: 0.3, gen: gen2));
        (ySplit * weights).Sum().Backward();

        AssertClose(ySplit.ToDoubleArray(), y.ToDoubleArray(), 1e-12, 1e-14, "y");
        AssertClose(split.Grad!.ToDoubleArray(), fused.Grad!.ToDoubleArray(), 1e-12, 1e-14, "dqkv");
        Assert.Equal(gen2.Offset, gen1.Offset); // both took B H T T counters
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Gradient_matches_finite_differences(bool causal)
    {
        var qkv = RandomTensor([2, 5, 3 * 2 * 3], seed: 41, DType.F64);
        GradCheck.Check(xs => Tensor.QkvAttention(xs[0], 2, causal), [qkv]);
    }

    [Fact]
    public void Gradient_with_dropout_matches_finite_differences()
    {
        var qkv = RandomTensor([1, 6, 3 * 2 * 3], seed: 43, DType.F64);
        GradCheck.Check(xs => Tensor.QkvAttention(xs[0], 2, causal: true, dropoutP: 0.3, gen: new Generator(42, 1000)), [qkv]);
    }

    [Fact]
    public void Shapes_that_are_not_packed_heads_are_refused()
    {
        var notThirds = Tensor.Zeros([1, 4, 10]);
        Assert.Contains("(B, T, 3C)", Assert.Throws<ArgumentException>(() => Tensor.QkvAttention(notThirds, 1, causal: true)).Message);
        var oddHeads = Tensor.Zeros([1, 4, 12]);
        Assert.Contains("3 heads", Assert.Throws<ArgumentException>(() => Tensor.QkvAttention(oddHeads, 3, causal: true)).Message);
    }

    private static Tensor Leaf(Tensor t)
    {
        var leaf = t.Clone().Detach();
        leaf.RequiresGrad = true;
        return leaf;
    }

    /// <summary>Third <paramref name="part"/> of qkv (B, T, 3C) as (B, H, T, D).</summary>
    private static Tensor Heads(Tensor qkv, int part, int h)
    {
        int b = qkv.Shape[0], t = qkv.Shape[1], c = qkv.Shape[2] / 3;
        return qkv.Narrow(2, part * c, c).Reshape(b, t, h, c / h).Transpose(1, 2);
    }

    private static Tensor Merge(Tensor y) // (B, H, T, D) -> (B, T, H D)
    {
        int b = y.Shape[0], h = y.Shape[1], t = y.Shape[2], d = y.Shape[3];
        return y.Transpose(1, 2).Contiguous().Reshape(b, t, h * d);
    }
}
