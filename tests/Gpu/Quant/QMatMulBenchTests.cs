using ManagedTensor.Apps;
using ManagedTensor.Gpu.Bench;
using Xunit;

namespace ManagedTensor.Tests.Gpu.Quant;

/// <summary>The offline figures of `mt bench qmatmul --traffic`: weight bytes per decoded token and the bounds they set.</summary>
public class QMatMulBenchTests
{
    [Fact]
    public void BytesPerTokenOfTinyLlamaAndLlama2_7B()
    {
        // TinyLlama-1.1B: 22 layers of q, o (2048 x 2048), k, v (256 x 2048), three 5632 x 2048 MLP matrices, and the
        // 32000 x 2048 lm_head: 1,034,420,224 weights read per token; Q4_0 stores 18 bytes per 32.
        Assert.Equal(22L * (2 * 2048 * 2048 + 2 * 256 * 2048 + 3 * 5632 * 2048) + 32000L * 2048, QMatMulBench.TinyLlama.ValuesPerToken);
        Assert.Equal(1_034_420_224L / 32 * 18, QMatMulBench.ByteCount(DType.Q4_0, QMatMulBench.TinyLlama.ValuesPerToken));
        // Llama-2-7B in Q4_0: 3.7 GB per token (136 tokens/s at 504 GB/s) and 3.8 GB stored with its embedding, against
        // 13.5 GB in fp16: the "about 3.9 GB on a device, not 14 GB".
        long q4 = QMatMulBench.ByteCount(DType.Q4_0, QMatMulBench.Llama2_7B.ValuesPerToken);
        Assert.InRange(q4 / 1e9, 3.71, 3.72);
        Assert.InRange(504e9 / q4, 135, 136);
        Assert.InRange(QMatMulBench.Llama2_7B.StoredBytes(DType.Q4_0) / 1e9, 3.78, 3.80);
        Assert.InRange(QMatMulBench.Llama2_7B.StoredBytes(DType.F16) / 1e9, 13.4, 13.5);
    }

    [Fact]
    public void TrafficTablePrintsWithoutAGpu()
    {
        var output = new StringWriter();
        Assert.Equal(0, MtApp.Run(["bench", "qmatmul", "--traffic"], output));
        string text = output.ToString();
        Assert.Contains("| TinyLlama-1.1B | Q4_0 | 4.50 | 1034.4 M | 581.9 | 0.62 | 866 | 8249 |", text);
        Assert.Contains("| Llama-2-7B | Q8_0 | 8.50 |", text);
    }
}
