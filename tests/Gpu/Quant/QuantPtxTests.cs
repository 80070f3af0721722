using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Kernels.Quant;
using ManagedTensor.Gpu.Sass;
using ManagedTensor.Tests.Gpu.Gemm;
using Xunit;
using Xunit.Abstractions;

namespace ManagedTensor.Tests.Gpu.Quant;

/// <summary>
/// The quantized kernels' PTX for sm_89 and sm_90 (every one is also in GpuBackend.AllKernelSpecs, which
/// PtxKernelTests compiles and assembles): the instructions their design rests on are there, and with ptxas
/// the GEMV and the GEMM keep everything in registers (no stack frame, no spills).
/// </summary>
public class QuantPtxTests(ITestOutputHelper output)
{
    /// <summary>
    /// The GEMV of every weight format in f16 and of Q4_0 in float32, the GEMM of the formats whose decoders differ
    /// most (PtxKernelTests compiles and assembles every kernel; here the ones where registers could run out),
    /// compiled once for both targets.
    /// </summary>
    private static readonly Lazy<List<(KernelSpec Spec, ILGPU.Runtime.Cuda.CudaArchitecture Arch, string? Ptx, string? Error)>> Compiled = new(() =>
    {
        var specs = QuantKernels.WeightFormats.Select(f => QGemvKernels.Spec(f, DType.F16))
            .Append(QGemvKernels.Spec(DType.Q4_0, DType.F32))
            .Concat(new[] { DType.Q4_0, DType.Q4_K, DType.Q5_K }.Select(f => QGemmMmaKernels.Spec(f, DType.BF16)))
            .ToList();
        return PtxCompiler.CiTargets
            .SelectMany(arch => PtxCompiler.CompileAll(specs.Select(s => s.Method), arch).Select((r, i) => (specs[i], arch, r.Ptx, r.Error)))
            .ToList();
    });

    [Fact]
    public void GemvStreamsWeightsWith16ByteLoadsAndGemmUsesTensorCores()
    {
        foreach (var (spec, arch, ptx, error) in Compiled.Value)
        {
            Assert.True(ptx is not null, $"{spec.Name} sm_{arch.Major}{arch.Minor}: {error}");
            string body = ptx.Split(".entry")[1];
            Assert.DoesNotContain(".local", body);
            if (spec.Name.StartsWith("QGemv", StringComparison.Ordinal))
            {
                Assert.Matches(@"ld\.global(\.nc)?\.v4\.[bu]32", body);  // W's 16-byte chunks
                Assert.Contains("bar.warp.sync", body);                     // the warp's stage
            }
            else
            {
                Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", body);
                Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.shared.b16", body);
            }
        }
    }

    /// <summary>With ptxas: they assemble with no stack frame and no spills (registers and shared memory printed).</summary>
    [PtxasFact]
    public void GemvAndGemmAssembleWithoutLocalMemory()
    {
        var lines = new System.Collections.Concurrent.ConcurrentBag<string>();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.ForEach(Compiled.Value, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, job =>
        {
            string name = $"{job.Spec.Name} sm_{job.Arch.Major}{job.Arch.Minor}";
            if (job.Ptx is null)
            {
                failures.Add($"{name}: {job.Error}");
                return;
            }
            var (cubin, log) = CudaTools.AssembleCached(job.Ptx, job.Arch); // shared with PtxKernelTests' assembly of every kernel
            string summary = GemmPtxTests.Summary(log);
            lines.Add($"{name}: {summary}");
            if (cubin is null) failures.Add($"{name}: {log}");
            else if (!summary.Contains("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads")) failures.Add($"{name}: {summary}");
        });
        foreach (var line in lines.Order()) output.WriteLine(line);
        Assert.True(failures.IsEmpty, string.Join("\n", failures));
    }
}
