using BenchmarkDotNet.Attributes;
using ManagedTensor.Cpu;

namespace ManagedTensor.Bench;

/// <summary>BenchmarkDotNet timings of Gemm.Run (float, all cores) on square matrices
/// (`dotnet run -c Release --project bench -- --filter '*SgemmBenchmarks*'`).</summary>
[MemoryDiagnoser]
public class SgemmBenchmarks
{
    private float[] a = [], b = [], c = [];

    [Params(64, 256, 512, 1024, 2048)]
    public int N { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        a = Enumerable.Range(0, N * N).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        b = Enumerable.Range(0, N * N).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        c = new float[N * N];
    }

    [Benchmark]
    public void Sgemm() => Gemm.Run(false, false, N, N, N, 1f, a, N, b, N, 0f, c, N);

    [Benchmark]
    public void SgemmTransposedB() => Gemm.Run(false, true, N, N, N, 1f, a, N, b, N, 0f, c, N);
}

/// <summary>The SGEMM versions of SgemmVersions side by side at one size, for the growth story.</summary>
public class SgemmVersionBenchmarks
{
    private float[] a = [], b = [], c = [];

    [Params(256)]
    public int N { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        a = Enumerable.Range(0, N * N).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        b = Enumerable.Range(0, N * N).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        c = new float[N * N];
    }

    [Benchmark(Baseline = true)] public void Naive() => SgemmVersions.Naive(N, a, b, c);
    [Benchmark] public void Blocked() => SgemmVersions.Blocked(N, a, b, c);
    [Benchmark] public void PackedOneThread() => SgemmVersions.Packed(N, a, b, c, 1);
    [Benchmark] public void PackedAllCores() => SgemmVersions.Packed(N, a, b, c, Environment.ProcessorCount);
}
