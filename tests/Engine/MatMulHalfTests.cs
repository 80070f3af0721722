using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>MatMul on BF16 and F16 tensors (the CPU reference the tensor-core kernels are checked against).</summary>
public class MatMulHalfTests
{
    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void HalfMatMulIsTheFloat32ProductRoundedOnce(DType dtype)
    {
        // Multiples of 1/64 are exact in both formats, so the float32 product is exact and only the output rounds.
        var rng = new Random(3);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(-64, 65) / 64f).ToArray();
        var a = Tensor.FromArray(Values(2 * 5 * 7), [2, 5, 7]);
        var b = Tensor.FromArray(Values(7 * 3), [7, 3]);
        var expected = a.MatMul(b).To(dtype).ToDoubleArray();
        var actual = a.To(dtype).MatMul(b.To(dtype));
        Assert.Equal(dtype, actual.DType);
        Assert.Equal([2, 5, 3], actual.Shape);
        Assert.Equal(expected, actual.ToDoubleArray());
        // A transposed view (the backward pass's case) gives the same as its contiguous copy.
        var bt = b.To(dtype).Transpose(0, 1).Contiguous().Transpose(0, 1);
        Assert.Equal(expected, a.To(dtype).MatMul(bt).ToDoubleArray());
    }
}
