using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// QMatMul with a 16-bit weight kept as stored (F16, BF16) and float32 activations: the float32 product with the widened
/// weight, on the decode path (a few rows: one weight row at a time) and the prefill path (tiles of rows through the
/// SGEMM), with a gradient to x.
/// </summary>
public class HalfWeightsTests
{
    [Theory]
    [InlineData(DType.F16, 1)]
    [InlineData(DType.F16, 3)]
    [InlineData(DType.BF16, 37)]
    [InlineData(DType.F16, 37)]
    public void Half_weights_multiply_as_their_widened_values(DType half, int rows)
    {
        var w = RandomTensor([300, 70], 1, DType.F32).To(half);
        var x = RandomTensor([rows, 70], 2, DType.F32);
        var expected = x.To(DType.F64).MatMul(w.To(DType.F64).MT);
        AssertClose(expected, x.QMatMul(w), 1e-5, 1e-5, $"{half} M={rows}");
        // Leading axes fold into rows, as a Linear's (B, T, K) input.
        AssertClose(expected.Reshape(1, rows, 300), x.Reshape(1, rows, 70).QMatMul(w), 1e-5, 1e-5, "(1, M, K)");
    }

    [Fact]
    public void Wide_rows_take_several_tiles_and_the_gradient_reaches_x()
    {
        var w = RandomTensor([9, 40000], 3, DType.F32).To(DType.BF16);   // about 6 rows per 1 MiB tile: two tiles
        var x = RandomTensor([5, 40000], 4, DType.F32);
        AssertClose(x.To(DType.F64).MatMul(w.To(DType.F64).MT), x.QMatMul(w), 1e-4, 1e-4, "tiles");
        // dL/dx = g W (W widened): the backward rule QMatMul has for every stored format.
        var xl = RandomTensor([4, 16], 5, DType.F32);
        xl.RequiresGrad = true;
        var w16 = RandomTensor([7, 16], 6, DType.F32).To(DType.F16);
        var g = RandomTensor([4, 7], 7, DType.F32);
        (xl.QMatMul(w16) * g).Sum().Backward();
        AssertClose(g.MatMul(w16.To(DType.F32)), xl.Grad!, 1e-5, 1e-6, "dx");
    }
}
