using ManagedTensor.Apps;
using Xunit;

namespace ManagedTensor.Tests.Attention;

/// <summary>`mt attention-bench` runs end to end on ILGPU's CPU accelerator at a toy size (speed and memory lines).</summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)] // shares the ilgpu-cpu device with the allocator tests
public class AttentionBenchTests
{
    [Fact]
    public void Speed_and_memory_lines_on_ilgpu_cpu()
    {
        var w = new StringWriter();
        var o = new AttentionBenchOptions(Device.IlgpuCpu, DType.F32, Batch: 1, Heads: 2, KvHeads: 1, SeqLens: [16], HeadDims: [16], MinSeconds: 0.005, Check: false);
        Assert.Equal(0, AttentionBench.Run(o, w));
        Assert.Matches(@"attention B=1 H=2 Hkv=1 T=16 D=16 dtype=F32 causal=True path=simt bwd_path=simt fwd_ms=\S+ fwd_tflops=\S+ fwdbwd_ms=\S+ fwdbwd_tflops=\S+", w.ToString());

        w = new StringWriter();
        Assert.Equal(0, AttentionBench.Run(o with { Memory = true }, w));
        var line = w.ToString();
        Assert.Contains("memory B=1 H=2 T=16 D=16", line);
        Assert.Matches(@"extra_bytes_per_token=\d+", line);
    }
}
