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

    /// <summary>
    /// The issue's memory claim, on the allocator's own accounting (the same on ilgpu-cpu as on CUDA):
    /// beyond inputs, outputs and gradients, forward + backward keep a constant number of bytes per
    /// token, so the extra memory grows linearly with T where a T x T score matrix grows quadratically.
    /// That constant is Di (one float per row and head) and, on the tensor-core path, the float32 dQ
    /// accumulator (D floats per row and head), within the allocator's power-of-two size classes.
    /// </summary>
    [Theory]
    [InlineData(DType.F32, 16)]
    [InlineData(DType.BF16, 64)]
    public void Extra_memory_grows_linearly_with_the_sequence(DType dtype, int headDim)
    {
        var w = new StringWriter();
        var o = new AttentionBenchOptions(Device.IlgpuCpu, dtype, Batch: 1, Heads: 2, KvHeads: 1, SeqLens: [64, 128, 256], HeadDims: [headDim], MinSeconds: 0, Check: false, Memory: true);
        Assert.Equal(0, AttentionBench.Run(o, w));
        var lines = w.ToString().Split('\n').Where(l => l.StartsWith("memory B=", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, lines.Count);
        double Field(string line, string name) =>
            double.Parse(System.Text.RegularExpressions.Regex.Match(line, name + @"=(-?[\d.]+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var perToken = lines.Select(l => Field(l, "extra_bytes_per_token")).ToList();
        int heads = 2;
        Assert.All(perToken, b => Assert.InRange(b, 0, 2 * 4 * (headDim + 1) * heads)); // Di and the dQ accumulator, rounded up at most 2x
        Assert.Equal(perToken[0], perToken[2], 0);                                       // the same at T = 64 and 256: linear
    }
}
