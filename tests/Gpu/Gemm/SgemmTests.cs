using ILGPU;
using ILGPU.Runtime;
using ManagedTensor.Gpu.Bench.SgemmLadder;
using ManagedTensor.Gpu.Gemm;
using Xunit;

namespace ManagedTensor.Tests.Gpu.Gemm;

/// <summary>The five float32 GEMM versions against the float64 reference on the ILGPU CPU accelerator.</summary>
public class SgemmTests(GpuFixture gpu) : IClassFixture<GpuFixture>
{
    private delegate void Launcher(Accelerator accelerator, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, GemmArgs p, int batch);

    private static readonly (string Name, Launcher Launch, bool NeedsAlign)[] Versions =
    [
        ("sgemm1", Sgemm1Naive.Launch, false),
        ("sgemm2", Sgemm2SharedTiles.Launch, false),
        ("sgemm3", Sgemm3RegisterBlocked.Launch, false),
        ("sgemm4", Sgemm4Vectorized.Launch, true),
        ("sgemm5", Sgemm5WarpTiled.Launch, true),
    ];

    private void Run(GemmCase t, Launcher launch, string who)
    {
        using var a = gpu.Upload(t.A.Select(v => (float)v).ToArray());
        using var b = gpu.Upload(t.B.Select(v => (float)v).ToArray());
        using var c = gpu.Upload(t.C0.Select(v => (float)v).ToArray());
        using var bias = gpu.Upload(t.Bias.Select(v => (float)v).ToArray());
        launch(gpu.Accelerator, a.View, b.View, c.View, t.Args.HasBias != 0 ? bias.View : default, t.Args, t.Batch);
        var actual = gpu.Download(c).Select(v => (double)v).ToArray();
        t.AssertClose(t.Expected(), actual, rtol: 1e-5, atol: 1e-5, who);
    }

    [Fact]
    public void EveryVersionAndLayoutMatchesTheReferenceAtRaggedSizes()
    {
        foreach (var (name, launch, needsAlign) in Versions)
        {
            foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
            {
                // 37 x 29 x 45: partial tiles in every direction, K not a multiple of any BK.
                Run(GemmCase.Random(37, 29, 45, ta, tb, align: needsAlign ? 4 : 1, seed: 3), launch, name);
                // Batched, strided rows (padding), B shared across the batch, full epilogue: the Linear layer's products (NT, TN).
                if (ta != tb) Run(GemmCase.Random(21, 70, 19, ta, tb, batch: 2, pad: 3, align: needsAlign ? 4 : 1, seed: 5,
                    alpha: 0.5f, beta: 0.25f, bias: true, act: GemmActivation.Relu, shareB: true), launch, name);
            }
        }
    }

    [Fact]
    public void TheFastVersionsCoverSeveralBlocksAndTheGeluEpilogue()
    {
        // 130 x 140: a second, nearly empty, row and column of 128-blocks; K = 40 spans several tiles.
        foreach (var (name, launch, needsAlign) in Versions.Skip(2))
        {
            Run(GemmCase.Random(130, 140, 40, false, true, align: 4, seed: 7, bias: true, act: GemmActivation.GeluTanh), launch, name);
            Run(GemmCase.Random(130, 132, 33, true, false, batch: 2, align: 4, seed: 8), launch, name);
        }
    }

    [Fact]
    public void VectorizedVersionsRejectUnalignedLeadingDimensions()
    {
        var t = GemmCase.Random(8, 8, 5, false, false, seed: 1);
        using var a = gpu.Upload(new float[t.A.Length]);
        using var b = gpu.Upload(new float[t.B.Length]);
        using var c = gpu.Upload(new float[t.C0.Length]);
        var e = Assert.Throws<ArgumentException>(() => Sgemm5WarpTiled.Launch(gpu.Accelerator, a.View, b.View, c.View, default, t.Args));
        Assert.Contains("lda 5", e.Message);
        var small = Assert.Throws<ArgumentException>(() => Sgemm1Naive.Launch(gpu.Accelerator, a.View, b.View, c.View.SubView(0, 10), default, t.Args));
        Assert.Contains("C (8 x 8, ld 8", small.Message);
    }
}
