using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using Xunit;

namespace ManagedTensor.Tests.Llama;

/// <summary>
/// The tensor-op Llama (DeviceLlama) against the span model and the numpy reference: the same greedy
/// tokens for stories260K (interleaved RoPE, GQA 8/4), the same logits for a half-split-RoPE GQA model
/// through prefill, single tokens and a rewound conversation, on the CPU and on the GPU backend.
/// </summary>
public class DeviceLlamaTests
{
    internal static readonly LlamaConfig Small = new(Dim: 32, HiddenDim: 48, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 50, SeqLen: 24,
        RopeTheta: 500000f, Rope: RopeLayout.HalfSplit);

    /// <summary>Feeds the same chunks (start position, tokens) to both models and compares each call's logits.</summary>
    internal static void AssertSameLogits(ILlamaRunner expected, ILlamaRunner actual, (int Start, int[] Tokens)[] chunks, double tol)
    {
        foreach (var (start, tokens) in chunks)
        {
            var want = expected.Forward(tokens, start).Select(v => (double)v).ToArray();
            var got = actual.Forward(tokens, start).Select(v => (double)v).ToArray();
            TestUtil.AssertClose(want, got, rtol: tol, atol: tol, $"logits after tokens {start}..{start + tokens.Length - 1}");
        }
    }

    internal static readonly (int, int[])[] Chunks = [(0, [1, 7, 3, 9, 4]), (5, [11]), (6, [2]), (7, [40]), (3, [5, 6]), (5, [8])];

    [Fact]
    public void Stories260K_greedy_tokens_equal_the_numpy_reference()
    {
        var model = Llama2c.Load(RepoPaths.Stories260K);
        using var device = DeviceLlama.From(model, Device.Cpu, cacheLength: 64);
        var want = File.ReadAllLines(RepoPaths.Of("tests", "fixtures", "stories260K", "greedy200.txt")).Select(int.Parse).Take(60);
        var got = new List<int>();
        int tok = 1;
        for (int p = 0; p < 60; p++) got.Add(tok = Sampler.ArgMax(device.Forward([tok], p)));
        Assert.Equal(want, got);
    }

    [Fact]
    public void Half_split_gqa_model_gives_the_span_models_logits_through_prefill_decode_and_rewind()
    {
        var model = LlamaBench.RandomLlama(Small, GgmlType.F32, seed: 3);
        using var device = DeviceLlama.From(model, Device.Cpu, cacheLength: 16);
        AssertSameLogits(new CachedLlama(model, 16), device, Chunks, 1e-4);
        Assert.Throws<ArgumentOutOfRangeException>(() => device.Forward([1], 9)); // 6 positions cached: 9 leaves a gap
        Assert.Throws<ArgumentOutOfRangeException>(() => device.Forward(new int[11], 6)); // past the cache
    }

    /// <summary>16-bit weights: activations are cast for each product (fp32 accumulation), the rest stays float32.</summary>
    [Theory]
    [InlineData(DType.F16, 3e-3)]
    [InlineData(DType.BF16, 3e-2)]
    public void Sixteen_bit_weights_stay_close_to_the_float32_logits(DType dtype, double tol)
    {
        var model = LlamaBench.RandomLlama(Small, GgmlType.F32, seed: 3);
        using var device = DeviceLlama.From(model, Device.Cpu, cacheLength: 16, dtype);
        Assert.Equal(dtype, device.WeightDType);
        AssertSameLogits(new CachedLlama(model, 16), device, Chunks, tol);
    }

    [Fact]
    public void Chat_session_runs_on_the_device_model()
    {
        var model = Llama2c.Load(RepoPaths.Stories260K);
        var tok = ManagedTensor.Models.Tokenizers.LlamaTokenizer.LoadLlama2c(RepoPaths.Tok512, 512);
        var greedy = new SamplerOptions(Temperature: 0);
        var span = LlamaGenerate.Generate(model, tok, tok.Encode("Once upon a time", bos: true), 30, greedy);
        using var device = DeviceLlama.From(model, Device.Cpu, cacheLength: 128);
        var onDevice = new ChatSession(device, tok, greedy).Continue(tok.Encode("Once upon a time", bos: true), 30);
        Assert.Equal(span.Generated, onDevice.Generated);
        Assert.Equal(30, onDevice.Generated.Count);
    }
}

/// <summary>The same model on the GPU backend (ILGPU's CPU accelerator): single tokens take the decode attention kernel.</summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class DeviceLlamaGpuBackendTests
{
    [Fact]
    public void Gpu_backend_gives_the_span_models_logits()
    {
        var model = LlamaBench.RandomLlama(DeviceLlamaTests.Small, GgmlType.F32, seed: 3);
        using var device = DeviceLlama.From(model, Device.IlgpuCpu, cacheLength: 16);
        DeviceLlamaTests.AssertSameLogits(new CachedLlama(model, 16), device, DeviceLlamaTests.Chunks, 1e-4);
    }
}
