using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>Tensor.MatMul on the CPU against a scalar float64 loop over logical indices: promoted 1-D
/// operands, broadcast batch axes, transposed and strided views, the folded Linear-layer case, F32 and F64.</summary>
public class MatMulTests
{
    /// <summary>Row-major values of a tensor of any layout, read through its strides (no engine ops).</summary>
    private static double[] Logical(Tensor t)
    {
        var result = new double[t.Numel];
        var index = new int[t.Rank];
        for (int flat = 0; flat < t.Numel; flat++)
        {
            int rem = flat, off = t.Offset;
            for (int d = t.Rank - 1; d >= 0; d--)
            {
                index[d] = rem % t.Shape[d];
                rem /= t.Shape[d];
                off += index[d] * t.Strides[d];
            }
            result[flat] = t.DType == DType.F32 ? t.Data<float>()[off] : t.Data<double>()[off];
        }
        return result;
    }

    /// <summary>The expected (..., M, N) product of two same-rank operands already broadcast by the caller's shapes.</summary>
    private static double[] Expected(Tensor a, Tensor b, int[] batchShape)
    {
        var av = Logical(a);
        var bv = Logical(b);
        int m = a.Shape[^2], k = a.Shape[^1], n = b.Shape[^1];
        int batch = batchShape.Aggregate(1, (x, y) => x * y);
        var result = new double[batch * m * n];
        for (int bi = 0; bi < batch; bi++)
        {
            // Batch index in a and b, axes aligned from the right; missing and size-1 axes broadcast.
            int ai = 0, bj = 0, rem = bi, aScale = 1, bScale = 1;
            for (int d = batchShape.Length - 1; d >= 0; d--)
            {
                int i = rem % batchShape[d];
                rem /= batchShape[d];
                int da = d - batchShape.Length + a.Rank - 2, db = d - batchShape.Length + b.Rank - 2;
                int aSize = da >= 0 ? a.Shape[da] : 1, bSize = db >= 0 ? b.Shape[db] : 1;
                ai += (aSize == 1 ? 0 : i) * aScale;
                bj += (bSize == 1 ? 0 : i) * bScale;
                aScale *= aSize;
                bScale *= bSize;
            }
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < k; p++) sum += av[(ai * m + i) * k + p] * bv[(bj * k + p) * n + j];
                    result[(bi * m + i) * n + j] = sum;
                }
        }
        return result;
    }

    private static Tensor Random(int[] shape, int seed, DType dtype) => dtype == DType.F32
        ? Tensor.FromArray(TestUtil.RandomValues(shape.Aggregate(1, (x, y) => x * y), seed).Select(v => (float)v).ToArray(), shape)
        : Tensor.FromArray(TestUtil.RandomValues(shape.Aggregate(1, (x, y) => x * y), seed), shape);

    private static void Check(Tensor a, Tensor b, int[] batchShape, double tol)
    {
        var c = a.MatMul(b);
        Assert.Equal(batchShape.Append(a.Shape[^2]).Append(b.Shape[^1]).ToArray(), c.Shape);
        TestUtil.AssertClose(Expected(a, b, batchShape), Logical(c), tol, tol, $"{a.Describe()} @ {b.Describe()}");
    }

    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F64, 1e-12)]
    public void PlainAndRaggedShapes(DType dtype, double tol)
    {
        foreach (var (m, k, n) in new[] { (1, 1, 1), (3, 7, 5), (17, 65, 33), (129, 257, 67), (130, 90, 140) })
            Check(Random([m, k], 1, dtype), Random([k, n], 2, dtype), [], tol * Math.Sqrt(k));
    }

    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F64, 1e-12)]
    public void TransposedViews(DType dtype, double tol)
    {
        var a = Random([40, 23], 3, dtype).MT;  // (23, 40), column-major
        var b = Random([50, 40], 4, dtype).MT;  // (40, 50), column-major
        Check(a, b, [], tol * 10);
        Check(a, Random([40, 50], 5, dtype), [], tol * 10);
        Check(Random([23, 40], 6, dtype), b, [], tol * 10);
    }

    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F64, 1e-12)]
    public void StridedViewsAreGathered(DType dtype, double tol)
    {
        // Every other column of a (8, 30) matrix: neither axis has unit stride.
        var a = Random([8, 30], 7, dtype).Reshape(8, 15, 2).Narrow(2, 0, 1).Squeeze(2); // (8, 15), strides (30, 2)
        var b = Random([2, 15, 9], 8, dtype).Permute(1, 0, 2).Narrow(1, 1, 1).Squeeze(1); // (15, 9), strides (9, 1) at offset 135
        Check(a, b, [], tol * 10);
        Check(Random([3, 8, 15], 9, dtype), Random([9, 15], 10, dtype).Reshape(3, 5, 9).Permute(2, 0, 1).Reshape(9, 15).MT.Unsqueeze(0), [3], tol * 10);
    }

    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F64, 1e-12)]
    public void OneDimensionalOperandsArePromoted(DType dtype, double tol)
    {
        var v = Random([6], 11, dtype);
        var mat = Random([6, 4], 12, dtype);
        var vm = v.MatMul(mat); // (6) @ (6, 4) -> (4)
        Assert.Equal([4], vm.Shape);
        TestUtil.AssertClose(Expected(v.Reshape(1, 6), mat, []), Logical(vm), tol, tol);
        var mat2 = Random([5, 6], 13, dtype);
        var mv = mat2.MatMul(v); // (5, 6) @ (6) -> (5)
        Assert.Equal([5], mv.Shape);
        TestUtil.AssertClose(Expected(mat2, v.Reshape(6, 1), []), Logical(mv), tol, tol);
    }

    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F64, 1e-12)]
    public void BatchedWithBroadcastBatchAxes(DType dtype, double tol)
    {
        Check(Random([2, 3, 5, 7], 14, dtype), Random([2, 3, 7, 4], 15, dtype), [2, 3], tol * 5);
        Check(Random([2, 1, 5, 7], 16, dtype), Random([3, 7, 4], 17, dtype), [2, 3], tol * 5);
        Check(Random([4, 9, 6], 18, dtype), Random([6, 11], 19, dtype), [4], tol * 5);            // folded: b shared
        Check(Random([4, 6, 9], 20, dtype).MT, Random([6, 11], 21, dtype), [4], tol * 5);         // a transposed: per batch
        Check(Random([5, 6], 22, dtype), Random([3, 6, 8], 23, dtype), [3], tol * 5);             // a broadcast
        Check(Random([2, 64, 200], 24, dtype), Random([3, 1, 200, 96], 25, dtype).MT.MT, [3, 2], tol * 20); // large: threaded GEMM
    }

    [Fact]
    public void LargeFoldedProductMatchesReference()
    {
        // (4, 100, 130) @ (130, 70): one GEMM with M = 400 on the fast kernel.
        Check(Random([4, 100, 130], 26, DType.F32), Random([130, 70], 27, DType.F32), [4], 1e-4);
    }

    [Fact]
    public void InnerSizeMismatchNamesBothShapes()
    {
        var a = Random([3, 4], 1, DType.F32);
        var b = Random([5, 2], 2, DType.F32);
        var ex = Assert.Throws<ArgumentException>(() => a.MatMul(b));
        Assert.Contains("(3, 4)", ex.Message.Replace("[", "(").Replace("]", ")"));
        Assert.Contains("(5, 2)", ex.Message.Replace("[", "(").Replace("]", ")"));
    }
}
