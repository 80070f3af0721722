using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>IndexSelect, IndexAdd, Gather and ScatterAdd against float64 loops over multi-indices.</summary>
public class IndexTests
{
    public static TheoryData<DType, DType, int> Cases()
    {
        var data = new TheoryData<DType, DType, int>();
        foreach (var t in Nn.FloatTypes)
            foreach (var it in new[] { DType.I32, DType.I64 })
                foreach (int axis in new[] { 0, 1, 2 })
                    data.Add(t, it, axis);
        return data;
    }

    private static readonly int[] Shape = [4, 5, 3];

    private static int[] Strides(int[] shape)
    {
        var s = new int[shape.Length];
        for (int d = shape.Length - 1, acc = 1; d >= 0; acc *= shape[d], d--) s[d] = acc;
        return s;
    }

    /// <summary>The multi-index of flat position <paramref name="p"/> in a row-major <paramref name="shape"/>.</summary>
    private static int[] Coord(int p, int[] shape)
    {
        var c = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            c[d] = p % shape[d];
            p /= shape[d];
        }
        return c;
    }

    private static int Flat(int[] coord, int[] shape)
    {
        var s = Strides(shape);
        int p = 0;
        for (int d = 0; d < coord.Length; d++) p += coord[d] * s[d];
        return p;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void IndexSelectMatchesReference(DType dtype, DType idxType, int axis)
    {
        var x = Nn.Random(Shape, 1, dtype);
        long[] ids = [Shape[axis] - 1, 0, 2, 0, 2];
        var y = x.IndexSelect(axis, Nn.Index(ids, idxType));
        var yShape = (int[])Shape.Clone();
        yShape[axis] = ids.Length;
        Assert.Equal(yShape, y.Shape);
        var xv = Nn.Values(x);
        var expected = new double[Nn.Numel(yShape)];
        for (int p = 0; p < expected.Length; p++)
        {
            var c = Coord(p, yShape);
            c[axis] = (int)ids[c[axis]];
            expected[p] = xv[Flat(c, Shape)];
        }
        Nn.Close(expected, y, $"index select axis {axis}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void IndexAddAccumulatesRepeatedIndices(DType dtype, DType idxType, int axis)
    {
        var dst = Nn.Random(Shape, 2, dtype);
        long[] ids = [1, Shape[axis] - 1, 1, 1, 0, 2];
        var srcShape = (int[])Shape.Clone();
        srcShape[axis] = ids.Length;
        var src = Nn.Random(srcShape, 3, dtype);
        var expected = Nn.Values(dst);
        var sv = Nn.Values(src);
        for (int p = 0; p < sv.Length; p++)
        {
            var c = Coord(p, srcShape);
            c[axis] = (int)ids[c[axis]];
            expected[Flat(c, Shape)] += sv[p];
        }
        dst.IndexAdd_(axis, Nn.Index(ids, idxType), src);
        Nn.Close(expected, dst, $"index add axis {axis}");
    }

    [Theory]
    [InlineData(DType.I32)]
    [InlineData(DType.I64)]
    public void EmbeddingLooksUpRowsAndIndexAddIsItsBackward(DType idxType)
    {
        // (V, C) = (7, 129) table, ids (2, 3) -> (2, 3, 129): the row-copy fast path.
        int v = 7, c = 129;
        var table = Nn.Random([v, c], 4, DType.F32);
        long[] ids = [6, 0, 3, 3, 1, 6];
        var e = Tensor.Embedding(table, Nn.Index(ids, idxType, [2, 3]));
        Assert.Equal([2, 3, c], e.Shape);
        var tv = Nn.Values(table);
        var expected = ids.SelectMany(i => tv.Skip((int)i * c).Take(c)).ToArray();
        Nn.Close(expected, e, "embedding");

        var grad = Tensor.Zeros([v, c], DType.F32);
        var dy = Nn.Random([6, c], 5, DType.F32);
        grad.IndexAdd_(0, Nn.Index(ids, idxType), dy);
        var gv = new double[v * c];
        var dv = Nn.Values(dy);
        for (int t = 0; t < ids.Length; t++)
            for (int j = 0; j < c; j++) gv[ids[t] * c + j] += dv[t * c + j];
        Nn.Close(gv, grad, "embedding backward");
    }

    [Fact]
    public void LargeIndexAddSplitsColumnsWithoutRaces()
    {
        // 4096 tokens into a (50, 768) table: many threads, repeated ids, compared with a serial loop.
        int v = 50, c = 768, n = 4096;
        var ids = Enumerable.Range(0, n).Select(i => (long)(i * 7 % v)).ToArray();
        var src = Nn.Random([n, c], 6, DType.F64);
        var dst = Tensor.Zeros([v, c], DType.F64);
        dst.IndexAdd_(0, Nn.Index(ids, DType.I64), src);
        var sv = Nn.Values(src);
        var expected = new double[v * c];
        for (int t = 0; t < n; t++)
            for (int j = 0; j < c; j++) expected[ids[t] * c + j] += sv[t * c + j];
        Nn.Close(expected, dst, "large index add");
    }

    /// <summary>An index tensor for gather/scatter on <paramref name="axis"/>: shape may be smaller than x off the axis.</summary>
    private static (long[] Ids, int[] Shape) GatherIndex(int axis, int seed)
    {
        int[] shape = [3, 4, 2];
        shape[axis] = 6; // longer than x on the axis, so indices repeat
        var rng = new Random(seed);
        var ids = Enumerable.Range(0, Nn.Numel(shape)).Select(_ => (long)rng.Next(Shape[axis])).ToArray();
        return (ids, shape);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GatherMatchesReference(DType dtype, DType idxType, int axis)
    {
        var x = Nn.Random(Shape, 7, dtype);
        var (ids, idxShape) = GatherIndex(axis, 8);
        var y = x.Gather(axis, Nn.Index(ids, idxType, idxShape));
        Assert.Equal(idxShape, y.Shape);
        var xv = Nn.Values(x);
        var expected = new double[ids.Length];
        for (int p = 0; p < ids.Length; p++)
        {
            var c = Coord(p, idxShape);
            c[axis] = (int)ids[p];
            expected[p] = xv[Flat(c, Shape)];
        }
        Nn.Close(expected, y, $"gather axis {axis}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ScatterAddAccumulatesRepeatedIndices(DType dtype, DType idxType, int axis)
    {
        var dst = Nn.Random(Shape, 9, dtype);
        var (ids, idxShape) = GatherIndex(axis, 10);
        var src = Nn.Random(idxShape, 11, dtype);
        var expected = Nn.Values(dst);
        var sv = Nn.Values(src);
        for (int p = 0; p < ids.Length; p++)
        {
            var c = Coord(p, idxShape);
            c[axis] = (int)ids[p];
            expected[Flat(c, Shape)] += sv[p];
        }
        dst.ScatterAdd_(axis, Nn.Index(ids, idxType, idxShape), src);
        Nn.Close(expected, dst, $"scatter add axis {axis}");
    }

    [Fact]
    public void GatherOnAVectorAndOnTheLastAxis()
    {
        var x = Nn.Make([10, 20, 30, 40], [4], DType.F64);
        Assert.Equal([40.0, 10, 40], Nn.Values(x.Gather(0, Nn.Index([3, 0, 3], DType.I32))));
        // Row-wise pick, the pattern of cross-entropy's target logits: (N, C) gather (N, 1) on axis 1.
        var logits = Nn.Make([1, 2, 3, 4, 5, 6], [2, 3], DType.F32);
        Assert.Equal([3.0, 4], Nn.Values(logits.Gather(1, Nn.Index([2, 0], DType.I64, [2, 1]))));
    }

    [Fact]
    public void OutOfRangeIndicesNameTheValueTheAxisSizeAndTheOp()
    {
        var x = Nn.Random([4, 5], 12, DType.F32);
        var e = Assert.Throws<IndexOutOfRangeException>(() => x.IndexSelect(1, Nn.Index([0, 5], DType.I32)));
        Assert.Contains("IndexSelect", e.Message);
        Assert.Contains("index 5", e.Message);
        Assert.Contains("size 5", e.Message);

        e = Assert.Throws<IndexOutOfRangeException>(() => x.IndexSelect(0, Nn.Index([-1], DType.I64)));
        Assert.Contains("index -1", e.Message);

        e = Assert.Throws<IndexOutOfRangeException>(() => x.IndexAdd_(0, Nn.Index([4], DType.I64), Nn.Random([1, 5], 13, DType.F32)));
        Assert.Contains("IndexAdd", e.Message);
        Assert.Contains("size 4", e.Message);

        e = Assert.Throws<IndexOutOfRangeException>(() => x.Gather(1, Nn.Index([0, 9], DType.I32, [1, 2])));
        Assert.Contains("Gather", e.Message);
        Assert.Contains("index 9", e.Message);

        e = Assert.Throws<IndexOutOfRangeException>(() => x.ScatterAdd_(0, Nn.Index([7, 0], DType.I64, [1, 2]), Nn.Random([1, 2], 14, DType.F32)));
        Assert.Contains("ScatterAdd", e.Message);
        Assert.Contains("index 7", e.Message);
    }

    [Fact]
    public void MisshapedSourcesAndIndicesAreRejected()
    {
        var x = Nn.Random([4, 5], 15, DType.F32);
        Assert.Throws<ArgumentException>(() => x.IndexAdd_(0, Nn.Index([1, 2], DType.I32), Nn.Random([3, 5], 16, DType.F32)));
        Assert.Throws<ArgumentException>(() => x.Gather(1, Nn.Index([0, 0, 0, 0, 0, 0], DType.I32, [6, 1])));
    }
}
