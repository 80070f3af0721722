using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>HugePages: the range advised is the whole 2 MiB pages inside an array, and advised arrays hold what is written.</summary>
public class HugePagesTests
{
    private const long Mb2 = HugePages.PageBytes;

    [Fact]
    public void TheAdvisedRangeIsTheWhole2MiBPagesInsideTheArray()
    {
        Assert.Equal((2 * Mb2, 3 * Mb2), HugePages.Interior(2 * Mb2 - 16, 3 * Mb2 + 16 + 5));  // starts just below a page: ends on the last whole one
        Assert.Equal((2 * Mb2, 4 * Mb2), HugePages.Interior(2 * Mb2, 4 * Mb2 + Mb2 / 2));     // aligned start
        Assert.Equal(0, HugePages.Interior(Mb2 + 16, 2 * Mb2 - 32).Length);                   // no whole page inside
    }

    [Fact]
    public void LargeTensorsOnAdvisedPagesHoldTheirValues()
    {
        // 5 MiB of floats: fresh uninitialized (advised) and zeroed (advised, then cleared) storages
        int n = 5 << 18;
        var x = Tensor.Arange(0, n, 1, DType.F32);
        var z = Tensor.Zeros([n]);
        var y = (x + z).ToDoubleArray();
        Assert.Equal(n - 1, y[^1]);
        Assert.Equal(123457, y[123457]);
        Assert.All(z.ToDoubleArray().Take(1000).Concat(z.ToDoubleArray().TakeLast(1000)), v => Assert.Equal(0, v));
    }
}
