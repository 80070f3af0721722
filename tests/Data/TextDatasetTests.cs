using ManagedTensor.Models.Data;
using Xunit;

namespace ManagedTensor.Tests.Data;

public sealed class TextDatasetTests
{
    [Fact]
    public void SplitsNinetyTen()
    {
        var ds = new TextDataset(Enumerable.Range(0, 1000).ToArray());
        Assert.Equal(900, ds.Train.Length);
        Assert.Equal(100, ds.Val.Length);
        Assert.Equal(900, ds.Val[0]);
    }

    [Fact]
    public void BatchTargetsAreInputsShiftedByOne()
    {
        var ds = new TextDataset(Enumerable.Range(0, 500).ToArray());
        var (x, y) = ds.GetBatch(Split.Train, 4, 8, new Generator(7));
        Assert.Equal([4, 8], x.Shape);
        Assert.Equal(DType.I64, x.DType);
        long[] xs = x.ToArray<long>(), ys = y.ToArray<long>();
        for (int b = 0; b < 4; b++)
        {
            for (int t = 0; t < 8; t++)
            {
                Assert.Equal(xs[b * 8] + t, xs[b * 8 + t]); // a contiguous run of the stream
                Assert.Equal(xs[b * 8 + t] + 1, ys[b * 8 + t]);
            }
            Assert.InRange(xs[b * 8], 0, 450 - 8 - 1);
        }
    }

    [Fact]
    public void SameGeneratorStateGivesSameBatches()
    {
        var ds = new TextDataset(Enumerable.Range(0, 5000).ToArray());
        var gen = new Generator(1337);
        ds.GetBatch(Split.Train, 3, 16, gen);
        var saved = (gen.Seed, gen.Offset);
        var (x1, _) = ds.GetBatch(Split.Train, 3, 16, gen);
        var (x2, _) = ds.GetBatch(Split.Train, 3, 16, new Generator(saved.Seed, saved.Offset));
        Assert.Equal(x1.ToArray<long>(), x2.ToArray<long>());
    }

    [Fact]
    public void TooShortSplitIsAClearError()
    {
        var ds = new TextDataset(Enumerable.Range(0, 50).ToArray());
        var e = Assert.Throws<UserErrorException>(() => ds.GetBatch(Split.Val, 1, 8, new Generator(1)));
        Assert.Contains("val split has 5 tokens", e.Message);
    }
}
