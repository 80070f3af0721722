using Xunit;
using static ManagedTensor.Tests.Engine.EngineRef;

namespace ManagedTensor.Tests.Engine;

/// <summary>Movement ops checked element by element against index arithmetic on the source's values.</summary>
public class ViewTests
{
    private static Tensor Seq(params int[] shape) => Tensor.FromArray(Enumerable.Range(0, Numel(shape)).Select(i => (float)i).ToArray(), shape);

    private static bool SharesStorage(Tensor a, Tensor b) => ReferenceEquals(a.Storage, b.Storage);

    [Fact]
    public void ReshapeIsAViewWhenContiguousAndACopyOtherwise()
    {
        var x = Seq(2, 3, 4);
        var v = x.Reshape(6, 4);
        Assert.True(SharesStorage(x, v));
        Assert.Equal(Values(x), Values(v));
        var inferred = x.View(-1, 2);
        Assert.Equal(new[] { 12, 2 }, inferred.Shape);

        var t = x.Transpose(1, 2);                       // (2, 4, 3), non-contiguous
        var r = t.Reshape(8, 3);                         // merging (4, 3) needs a copy
        Assert.False(SharesStorage(x, r));
        Assert.Equal(Values(t), Values(r));
        var kept = t.Reshape(2, 4, 3, 1);                // adding a size-1 axis stays a view
        Assert.True(SharesStorage(x, kept));
        Assert.Equal(Values(t), Values(kept));
        var split = t.Reshape(2, 2, 2, 3);               // splitting an axis stays a view
        Assert.True(SharesStorage(x, split));
        Assert.Equal(Values(t), Values(split));

        var e = Assert.Throws<ArgumentException>(() => x.Reshape(5, 5));
        Assert.Contains("[2, 3, 4]", e.Message);
        Assert.Contains("[5, 5]", e.Message);
    }

    [Fact]
    public void PermuteAndTranspose()
    {
        var x = Seq(2, 3, 4);
        var p = x.Permute(2, 0, 1);                      // (4, 2, 3): p[i, j, k] = x[j, k, i]
        Assert.Equal(new[] { 4, 2, 3 }, p.Shape);
        var vp = Values(p);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 2; j++)
                for (int k = 0; k < 3; k++)
                    Assert.Equal(j * 12 + k * 4 + i, vp[i * 6 + j * 3 + k]);
        var t = x.Transpose(0, 2);                       // (4, 3, 2)
        var vt = Values(t.Contiguous());
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 2; k++)
                    Assert.Equal(k * 12 + j * 4 + i, vt[i * 6 + j * 2 + k]);
        Assert.Equal(Values(x), Values(x.MT.MT));
        Assert.Throws<ArgumentException>(() => x.Permute(0, 0, 1));
    }

    [Fact]
    public void NarrowAndSlice()
    {
        var x = Seq(5, 6);
        var n = x.Narrow(1, 2, 3);                       // columns 2..4
        Assert.True(SharesStorage(x, n));
        var vn = Values(n);
        for (int r = 0; r < 5; r++)
            for (int c = 0; c < 3; c++) Assert.Equal(r * 6 + c + 2, vn[r * 3 + c]);
        var s = x.Slice(0, -3, -1);                      // rows 2, 3
        Assert.Equal(new[] { 2, 6 }, s.Shape);
        Assert.Equal(Enumerable.Range(12, 12).Select(i => (double)i).ToArray(), Values(s));
        Assert.Equal(new[] { 0, 6 }, x.Slice(0, 4, 2).Shape);
        Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(0, 4, 3));
    }

    [Fact]
    public void ExpandSqueezeUnsqueeze()
    {
        var x = Seq(3, 1);
        var e = x.Expand(2, 3, 4);
        Assert.Equal(new[] { 0, 1, 0 }, e.Strides);
        var ve = Values(e);
        for (int i = 0; i < 24; i++) Assert.Equal(i / 4 % 3, ve[i]);
        Assert.Equal(Values(e), Values(e.Contiguous()));
        var ex = Assert.Throws<ArgumentException>(() => Seq(3, 2).Expand(3, 4));
        Assert.Contains("[3, 2]", ex.Message);
        Assert.Contains("[3, 4]", ex.Message);

        var u = x.Unsqueeze(0).Unsqueeze(-1);
        Assert.Equal(new[] { 1, 3, 1, 1 }, u.Shape);
        Assert.Equal(new[] { 3 }, u.Squeeze().Shape);
        Assert.Equal(new[] { 3, 1, 1 }, u.Squeeze(0).Shape);
        Assert.Throws<ArgumentException>(() => u.Squeeze(1));
        Assert.Equal(Values(x), Values(u));
    }

    [Fact]
    public void ContiguousCopiesOnlyWhenNeeded()
    {
        var x = Seq(4, 5);
        Assert.Same(x, x.Contiguous());
        var t = x.MT;
        var c = t.Contiguous();
        Assert.True(c.IsContiguous);
        Assert.False(SharesStorage(x, c));
        Assert.Equal(Values(t), Values(c));
        var clone = x.Clone();
        Assert.False(SharesStorage(x, clone));
        Assert.Equal(Values(x), Values(clone));
    }

    [Fact]
    public void CatStackSplitChunk()
    {
        var a = Seq(2, 3);
        var b = Seq(2, 2).AddScalar(100);
        var c = Tensor.Cat([a, b], 1);                   // (2, 5)
        Assert.Equal(new double[] { 0, 1, 2, 100, 101, 3, 4, 5, 102, 103 }, Values(c));
        var c0 = Tensor.Cat([a, a.AddScalar(10), Tensor.Zeros([0, 3])], 0);
        Assert.Equal(new[] { 4, 3 }, c0.Shape);
        Assert.Equal(Values(a).Concat(Values(a).Select(v => v + 10)).ToArray(), Values(c0));
        var catT = Tensor.Cat([a.MT, a.MT], 1);          // non-contiguous inputs
        Assert.Equal(new double[] { 0, 3, 0, 3, 1, 4, 1, 4, 2, 5, 2, 5 }, Values(catT));
        var err = Assert.Throws<ArgumentException>(() => Tensor.Cat([a, Seq(3, 3)], 1));
        Assert.Contains("[2, 3]", err.Message);
        Assert.Contains("[3, 3]", err.Message);

        var s = Tensor.Stack([a, a.AddScalar(10)], 1);   // (2, 2, 3)
        Assert.Equal(new[] { 2, 2, 3 }, s.Shape);
        Assert.Equal(new double[] { 0, 1, 2, 10, 11, 12, 3, 4, 5, 13, 14, 15 }, Values(s));

        var x = Seq(7, 2);
        var parts = x.Split(3);
        Assert.Equal(new[] { 3, 3, 1 }, parts.Select(p => p.Shape[0]).ToArray());
        Assert.Equal(Values(x), parts.SelectMany(Values).ToArray());
        var sized = x.Split([2, 5]);
        Assert.Equal(new[] { 5, 2 }, sized[1].Shape);
        Assert.Equal(Values(x).Skip(4).ToArray(), Values(sized[1]));
        var chunks = x.Chunk(3, 0);
        Assert.Equal(new[] { 3, 3, 1 }, chunks.Select(p => p.Shape[0]).ToArray());
        var colChunks = x.Chunk(2, 1);
        Assert.Equal(new double[] { 1, 3, 5, 7, 9, 11, 13 }, Values(colChunks[1]));
    }

    [Fact]
    public void LargeTransposedCopiesMatchIndexMath()
    {
        // Big enough for the tiled transpose path; odd sizes leave partial tiles; a batch axis and a cast ride along.
        var x = Random([3, 70, 131], 1, DType.F32);
        foreach (var (view, dtype) in new[] { (x.Transpose(1, 2), DType.F32), (x.Permute(2, 1, 0), DType.F64), (x.Permute(1, 2, 0), DType.BF16) })
        {
            var c = view.To(dtype).Contiguous();
            var expected = Values(view).Select(v => dtype == DType.BF16 ? BFloat16.FromFloat((float)v).ToFloat() : v).ToArray();
            Assert.Equal(expected, Values(c));
        }
    }

    [Fact]
    public void ViewsOfViewsCompose()
    {
        // Transpose, then narrow, then expand an axis of size 1, then reshape: each step checked by index math.
        var x = Seq(4, 6);
        var v = x.MT.Narrow(0, 1, 4).Narrow(1, 2, 1).Expand(4, 3);    // (4, 3): v[i, j] = x[2, i + 1]
        var vv = Values(v);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++) Assert.Equal(2 * 6 + i + 1, vv[i * 3 + j]);
        Assert.Equal(vv, Values(v.Reshape(12)));
        Assert.Equal(vv, Values(v.Contiguous()));
    }
}
