using ManagedTensor.Gpu.Gemm;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>Test problems for the GEMM kernels and their float64 reference (the definition in GemmArgs).</summary>
internal sealed class GemmCase
{
    public required GemmArgs Args;
    public required int Batch;
    public required double[] A, B, C0, Bias;

    public override string ToString() =>
        $"{Args.M}x{Args.N}x{Args.K} {(Args.TransA != 0 ? 'T' : 'N')}{(Args.TransB != 0 ? 'T' : 'N')} batch {Batch} ld {Args.Lda}/{Args.Ldb}/{Args.Ldc} " +
        $"alpha {Args.Alpha} beta {Args.Beta} bias {Args.HasBias} act {(GemmActivation)Args.Activation}";

    /// <summary>
    /// A random problem. <paramref name="pad"/> extra elements at the end of every stored row (leading
    /// dimension = columns + pad); <paramref name="align"/> rounds leading dimensions up to a multiple of it.
    /// B is shared across the batch when <paramref name="shareB"/> (batch stride 0, a Linear layer's weight).
    /// Values are multiples of 1/64 in [-1, 1], exact in bf16 and fp16, so reduced-precision inputs lose nothing.
    /// </summary>
    public static GemmCase Random(int m, int n, int k, bool transA, bool transB, int batch = 1, int seed = 1,
        int pad = 0, int align = 1, float alpha = 1f, float beta = 0f, bool bias = false,
        GemmActivation act = GemmActivation.None, bool shareB = false)
    {
        int Ld(int cols) => (cols + pad + align - 1) / align * align;
        var p = GemmArgs.Dense(m, n, k, transA, transB);
        var (ar, ac) = p.StoredA;
        var (br, bc) = p.StoredB;
        p.Lda = Ld(ac);
        p.Ldb = Ld(bc);
        p.Ldc = Ld(n);
        p.BatchStrideA = batch > 1 ? (long)ar * p.Lda : 0;
        p.BatchStrideB = batch > 1 && !shareB ? (long)br * p.Ldb : 0;
        p.BatchStrideC = batch > 1 ? (long)m * p.Ldc : 0;
        p.Alpha = alpha;
        p.Beta = beta;
        p.HasBias = bias ? 1 : 0;
        p.Activation = (int)act;
        var rng = new Random(seed);
        double[] Values(long count) => Enumerable.Range(0, (int)count).Select(_ => rng.Next(-64, 65) / 64.0).ToArray();
        return new GemmCase
        {
            Args = p,
            Batch = batch,
            A = Values(Math.Max(1, (batch - 1) * p.BatchStrideA + (long)ar * p.Lda)),
            B = Values(Math.Max(1, (batch - 1) * p.BatchStrideB + (long)br * p.Ldb)),
            C0 = Values(Math.Max(1, (batch - 1) * p.BatchStrideC + (long)m * p.Ldc)),
            Bias = Values(n),
        };
    }

    /// <summary>C after the GEMM, in float64 (elements of C outside the M x N matrices keep their C0 values).</summary>
    public double[] Expected()
    {
        var p = Args;
        var c = (double[])C0.Clone();
        for (int b = 0; b < Batch; b++)
        {
            for (int i = 0; i < p.M; i++)
            {
                for (int j = 0; j < p.N; j++)
                {
                    double sum = 0;
                    for (int q = 0; q < p.K; q++)
                    {
                        double av = A[b * p.BatchStrideA + (p.TransA != 0 ? (long)q * p.Lda + i : (long)i * p.Lda + q)];
                        double bv = B[b * p.BatchStrideB + (p.TransB != 0 ? (long)j * p.Ldb + q : (long)q * p.Ldb + j)];
                        sum += av * bv;
                    }
                    long ci = b * p.BatchStrideC + (long)i * p.Ldc + j;
                    double v = p.Alpha * sum + (p.Beta != 0 ? p.Beta * C0[ci] : 0) + (p.HasBias != 0 ? Bias[j] : 0);
                    c[ci] = p.Activation switch
                    {
                        (int)GemmActivation.Relu => Math.Max(v, 0),
                        (int)GemmActivation.GeluTanh => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),
                        _ => v,
                    };
                }
            }
        }
        return c;
    }

    /// <summary>|actual - expected| &lt;= atol + rtol |expected| everywhere, naming the first element that is not.</summary>
    public void AssertClose(double[] expected, double[] actual, double rtol, double atol, string who)
    {
        Xunit.Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (!(Math.Abs(a - e) <= atol + rtol * Math.Abs(e)))
                Xunit.Assert.Fail($"{who} on {this}: element {i} is {a}, expected {e}");
        }
    }
}
