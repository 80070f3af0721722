using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>The fast GEMMs against Gemm.Reference: ragged shapes, padded leading dimensions, every
/// transpose combination, alpha/beta, and each SGEMM micro-kernel the CPU can run.</summary>
public class GemmTests
{
    public static readonly TheoryData<int, int, int> Shapes = new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 17, 33, 65 }, { 129, 67, 257 }, { 64, 64, 64 },
        { 13, 300, 40 }, { 300, 13, 40 }, { 37, 45, 600 }, { 200, 1, 90 }, { 1, 200, 90 }, // 13x300 NT: the swapped path; 1x200 NT: row times rows
        { 250, 1100, 33 }, { 1, 2000, 600 }, // 1 x 2000 NT: the threaded row-times-rows path
    };

    private static readonly (bool TransA, bool TransB)[] TransPairs = [(false, false), (false, true), (true, false), (true, true)];

    /// <summary>Operands stored with padded rows (ld = stored columns + pad), filled with random values.</summary>
    private static (T[] A, int Lda, T[] B, int Ldb, T[] C, int Ldc) Operands<T>(bool transA, bool transB, int m, int n, int k, int pad, int seed)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        int lda = aCols + pad, ldb = bCols + pad, ldc = n + pad;
        return (Fill<T>(aRows * lda, seed), lda, Fill<T>(bRows * ldb, seed + 1), ldb, Fill<T>(m * ldc, seed + 2), ldc);
    }

    private static T[] Fill<T>(int length, int seed) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        => TestUtil.RandomValues(length, seed).Select(T.CreateChecked).ToArray();

    private static double[] D(float[] x) => x.Select(v => (double)v).ToArray();

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SgemmMatchesReference(int m, int n, int k)
    {
        int seed = m * 7 + n * 13 + k;
        foreach (var (transA, transB) in TransPairs)
        {
            var (a, lda, b, ldb, c, ldc) = Operands<float>(transA, transB, m, n, k, pad: 3, seed);
            var expected = c.ToArray();
            Gemm.Reference(transA, transB, m, n, k, 0.75f, a, lda, b, ldb, -0.5f, expected, ldc);
            Gemm.Run(transA, transB, m, n, k, 0.75f, a, lda, b, ldb, -0.5f, c, ldc);
            TestUtil.AssertClose(D(expected), D(c), 1e-4, 1e-4 * Math.Sqrt(k), $"sgemm {m}x{n}x{k} tA={transA} tB={transB}");
        }
    }

    [Theory]
    [InlineData(0)] // SgemmIsa.Scalar
    [InlineData(1)] // SgemmIsa.Avx2
    [InlineData(2)] // SgemmIsa.Avx512
    public unsafe void EachKernelMatchesReference(int which)
    {
        var isa = (SgemmIsa)which;
        if (isa > Sgemm.Best) return; // this CPU cannot run that kernel
        foreach (var (m, n, k) in new[] { (129, 67, 257), (40, 300, 33), (300, 290, 520) })
            foreach (var (transA, transB) in TransPairs)
            {
                var (a, lda, b, ldb, c, ldc) = Operands<float>(transA, transB, m, n, k, pad: 1, seed: 5);
                var expected = c.ToArray();
                Gemm.Reference(transA, transB, m, n, k, 1.5f, a, lda, b, ldb, 2f, expected, ldc);
                fixed (float* pa = a, pb = b, pc = c)
                    Sgemm.Run(isa, transA, transB, m, n, k, 1.5f, pa, lda, pb, ldb, 2f, pc, ldc, threads: 2);
                TestUtil.AssertClose(D(expected), D(c), 1e-4, 1e-4 * Math.Sqrt(k), $"{isa} {m}x{n}x{k} tA={transA} tB={transB}");
            }
    }

    [Fact]
    public unsafe void SeveralColumnPanels()
    {
        // Serial: N above NC (4096). Threaded: K so deep that the shared B panel is cut below N.
        foreach (var (m, n, k, threads) in new[] { (13, Sgemm.NC + 70, 40, 1), (16, 2100, Sgemm.SharedPanelFloats / 2016 + 1, 2) })
        {
            var (a, lda, b, ldb, c, ldc) = Operands<float>(false, true, m, n, k, pad: 0, seed: 4);
            var expected = c.ToArray();
            Gemm.Reference(false, true, m, n, k, 1f, a, lda, b, ldb, 1f, expected, ldc);
            fixed (float* pa = a, pb = b, pc = c)
                Sgemm.Run(Sgemm.Best, false, true, m, n, k, 1f, pa, lda, pb, ldb, 1f, pc, ldc, threads);
            TestUtil.AssertClose(D(expected), D(c), 1e-4, 1e-4 * Math.Sqrt(k), $"{m}x{n}x{k} on {threads} threads");
        }
    }

    [Fact]
    public void BetaZeroIgnoresNaNInC()
    {
        foreach (int size in new[] { 4, 100 })
        {
            var (a, lda, b, ldb, c, ldc) = Operands<float>(false, false, size, size, size, pad: 0, seed: 9);
            Array.Fill(c, float.NaN);
            var expected = new float[c.Length];
            Gemm.Reference(false, false, size, size, size, 1f, a, lda, b, ldb, 0f, expected, ldc);
            Gemm.Run(false, false, size, size, size, 1f, a, lda, b, ldb, 0f, c, ldc);
            TestUtil.AssertClose(D(expected), D(c), 1e-4, 1e-3, $"beta 0, size {size}");
        }
    }

    [Fact]
    public void ZeroInnerSizeScalesC()
    {
        var c = new float[] { 1, 2, 3, 4 };
        Gemm.Run(false, false, 2, 2, 0, 1f, ReadOnlySpan<float>.Empty, 0, ReadOnlySpan<float>.Empty, 2, 3f, c, 2);
        Assert.Equal(new float[] { 3, 6, 9, 12 }, c);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void DgemmMatchesReference(int m, int n, int k)
    {
        foreach (var (transA, transB) in TransPairs)
        {
            var (a, lda, b, ldb, c, ldc) = Operands<double>(transA, transB, m, n, k, pad: 2, seed: 3);
            var expected = c.ToArray();
            Gemm.Reference(transA, transB, m, n, k, -1.25, a, lda, b, ldb, 0.5, expected, ldc);
            Gemm.Run(transA, transB, m, n, k, -1.25, a, lda, b, ldb, 0.5, c, ldc);
            TestUtil.AssertClose(expected, c, 1e-12, 1e-12, $"dgemm {m}x{n}x{k} tA={transA} tB={transB}");
        }
    }

    [Fact]
    public void TooShortSpanIsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            Gemm.Run(false, false, 4, 4, 4, 1f, new float[15], 4, new float[16], 4, 0f, new float[16], 4));
        Assert.Contains("A", ex.Message);
    }
}
