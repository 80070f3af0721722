using ManagedTensor.Gpu;
using ManagedTensor.Gpu.Kernels.Quant;
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
    private static readonly DType[] Activations = [DType.F32, DType.F16, DType.BF16];

    private static IEnumerable<KernelSpec> Gemvs() => QuantDecodeKernels.Formats.SelectMany(f => Activations.Select(a => QGemvKernels.Spec(f, a)));

    private static IEnumerable<KernelSpec> Gemms() => QuantDecodeKernels.Formats.SelectMany(f => Activations.Select(a => QGemmMmaKernels.Spec(f, a)));

    [Fact]
    public void GemvStreamsWeightsWith16ByteLoadsAndGemmUsesTensorCores()
    {
        foreach (var arch in PtxCompiler.CiTargets)
        {
            foreach (var spec in Gemvs())
            {
                string body = Body(PtxCompiler.Compile(spec.Method, arch));
                Assert.Matches(@"ld\.global(\.nc)?\.v4\.[bu]32", body);  // W's 16-byte chunks
                Assert.Contains("bar.warp.sync", body);               // the warp's stage
                Assert.DoesNotContain("cvt.rn.f32.u32", body);        // nibbles become floats without I2F
                Assert.DoesNotContain(".local", body);
            }
            foreach (var spec in Gemms())
            {
                string body = Body(PtxCompiler.Compile(spec.Method, arch));
                Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32", body);
                Assert.Contains("ldmatrix.sync.aligned.m8n8.x4.shared.b16", body);
                Assert.DoesNotContain(".local", body);
            }
        }
    }

    private static string Body(string ptx) => ptx.Split(".entry")[1];

    /// <summary>
    /// With ptxas: the GEMV and the GEMM of every format (one activation dtype each, plus the float32 GEMV; the rest
    /// differ only in their activation loads, and PtxKernelTests assembles them all) use no local memory.
    /// </summary>
    [PtxasFact]
    public void GemvAndGemmAssembleWithoutLocalMemory()
    {
        var specs = QuantDecodeKernels.Formats.SelectMany(f => new[] { QGemvKernels.Spec(f, DType.F16), QGemmMmaKernels.Spec(f, DType.BF16) })
            .Append(QGemvKernels.Spec(DType.Q4_0, DType.F32)).ToList();
        var jobs = PtxCompiler.CiTargets
            .SelectMany(arch => PtxCompiler.CompileAll(specs.Select(s => s.Method), arch).Select((r, i) => (Spec: specs[i], Arch: arch, r.Ptx, r.Error)))
            .ToList();
        var lines = new System.Collections.Concurrent.ConcurrentBag<string>();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.ForEach(jobs, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, job =>
        {
            string name = $"{job.Spec.Name} sm_{job.Arch.Major}{job.Arch.Minor}";
            if (job.Ptx is null)
            {
                failures.Add($"{name}: {job.Error}");
                return;
            }
            var (ok, log) = Ptxas.Assemble(job.Ptx, job.Arch);
            string summary = GemmPtxTests.Summary(log);
            lines.Add($"{name}: {summary}");
            if (!ok) failures.Add($"{name}: {log}");
            else if (!summary.Contains("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads")) failures.Add($"{name}: {summary}");
        });
        foreach (var line in lines.Order()) output.WriteLine(line);
        Assert.True(failures.IsEmpty, string.Join("\n", failures));
    }
}
