using ManagedTensor.Cpu;
using ManagedTensor.Models;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;
using ManagedTensor.Optim;
using Xunit;

namespace ManagedTensor.Tests.Llama;

/// <summary>
/// The one Llama (nn modules over tensor ops) against <see cref="LlamaReference"/> (float64 loops): the logits of a
/// half-split-RoPE GQA model through prefill, single tokens and a rewound cache; 16-bit and block-format weights
/// (kept as stored); a finite-difference gradient check in float64; training; and the same on the GPU backend.
/// </summary>
public class LlamaModelTests
{
    internal static readonly LlamaConfig Small = new(Dim: 32, HiddenDim: 48, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 50, SeqLen: 24,
        RopeTheta: 500000f, Rope: RopeLayout.HalfSplit);

    /// <summary>One layer with rows of whole Q8_0 and Q4_0 blocks (32 values): small enough for ILGPU's CPU accelerator.</summary>
    internal static readonly LlamaConfig Narrow = new(Dim: 32, HiddenDim: 64, NLayers: 1, NHeads: 4, NKvHeads: 2, VocabSize: 40, SeqLen: 24,
        Rope: RopeLayout.HalfSplit);

    /// <summary>256 wide, so every row is whole Q4_K blocks too.</summary>
    internal static readonly LlamaConfig Wide = new(Dim: 256, HiddenDim: 512, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 50, SeqLen: 32,
        RopeScaling: new Llama3RopeScaling(8, 1, 4, 16));

    /// <summary>Chunks (start position, tokens): a prefill, single tokens, then a rewind to position 3 and onwards.</summary>
    internal static readonly (int Start, int[] Tokens)[] Chunks = [(0, [1, 7, 3, 9, 4]), (5, [11]), (6, [2]), (7, [39]), (3, [5, 6]), (5, [8])];

    /// <summary>Feeds each chunk after truncating the cache to its start and compares its last logits with the reference's at that position.</summary>
    internal static void AssertChunksMatchTheReference(ICausalLM model, LlamaConfig config, IReadOnlyDictionary<string, Tensor> reference, double tol)
    {
        using var cache = model.NewCache(1, 16);
        var sequence = new List<int>();
        foreach (var (start, tokens) in Chunks)
        {
            cache.Truncate(start);
            sequence.RemoveRange(start, sequence.Count - start);
            sequence.AddRange(tokens);
            var got = model.NextLogits(tokens, cache).Select(v => (double)v).ToArray();
            var want = LlamaReference.Logits(config, reference, sequence.ToArray())[^1];
            TestUtil.AssertClose(want, got, rtol: tol, atol: tol, $"logits after tokens {start}..{start + tokens.Length - 1} on {model.Device}");
        }
        Assert.Equal(6, cache.Length);
    }

    internal static Dictionary<string, Tensor> Weights(ManagedTensor.Models.Llama model) => model.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value);

    [Fact]
    public void Logits_equal_the_float64_reference_through_prefill_decode_and_rewind()
    {
        using var model = LlamaBench.RandomLlama(Small, GgmlType.F32, seed: 3);
        AssertChunksMatchTheReference(model, Small, Weights(model), 1e-4);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(Tensor.Zeros([1, 25], DType.I64)));
        Assert.Contains("24", e.Message);
    }

    /// <summary>16-bit weights on the CPU: the float32 activations meet the stored values exactly (products in float32).</summary>
    [Theory]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void Sixteen_bit_weights_give_the_logits_of_their_stored_values(DType dtype)
    {
        using var f32 = LlamaBench.RandomLlama(Small, GgmlType.F32, seed: 3);
        using var model = new ManagedTensor.Models.Llama(Small, Weights(f32), floatWeights: dtype);
        Assert.Equal(dtype, model.StateDict()["model.layers.1.mlp.up_proj.weight"].DType);
        Assert.Equal(DType.F32, model.StateDict()["model.norm.weight"].DType);
        AssertChunksMatchTheReference(model, Small, Weights(model), 1e-4);
    }

    /// <summary>
    /// Block-format weights stay in their blocks (bytes as ggml's) and are multiplied by QMatMul, whose CPU kernel
    /// quantizes each activation row to Q8_0 (as llama.cpp does): the logits stay within that rounding of the float64
    /// logits of the decoded weights.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q8_0, 0.03)]
    [InlineData(GgmlType.Q4_0, 0.03)]
    [InlineData(GgmlType.Q4_K, 0.03)]
    public void Block_format_weights_stay_blocks_and_match_their_decoded_values(GgmlType type, double tol)
    {
        if (ManagedTensor.Quant.BlockFormats.Get(GgmlTypes.ToDType(type)).Encode is null) return; // random weights are made by the format's encoder
        using var model = LlamaBench.RandomLlama(Wide, type, seed: 5);
        var dtype = GgmlTypes.ToDType(type);
        var state = Weights(model);
        Assert.Equal(dtype, state["model.layers.0.self_attn.q_proj.weight"].DType);
        Assert.Equal(dtype, state["model.embed_tokens.weight"].DType);
        long blockBytes = state.Values.Where(t => t.DType == dtype).Sum(t => dtype.ByteCount(t.Numel));
        long floatBytes = state.Values.Where(t => t.DType == DType.F32).Sum(t => 4L * t.Numel);
        Assert.Equal(blockBytes + floatBytes, model.WeightBytes);
        Assert.True(model.WeightBytes < model.WeightCount * (type == GgmlType.Q8_0 ? 1.1 : 0.6), $"{model.WeightBytes} bytes for {model.WeightCount} values");
        AssertChunksMatchTheReference(model, Wide, state, tol);
    }

    [Fact]
    public void A_float64_llama_passes_a_finite_difference_gradient_check()
    {
        var config = new LlamaConfig(Dim: 8, HiddenDim: 12, NLayers: 2, NHeads: 2, NKvHeads: 1, VocabSize: 11, SeqLen: 8, Rope: RopeLayout.Interleaved);
        var gen = new Generator(7);
        var weights = config.WeightShapes(tied: false).ToDictionary(w => w.Name, w => w.Shape.Length == 1
            ? (Tensor.Ones(w.Shape, DType.F64) + Tensor.Randn(w.Shape, gen, 0, 0.1, DType.F64))
            : Tensor.Randn(w.Shape, gen, 0, 0.5, DType.F64));
        var model = new ManagedTensor.Models.Llama(config, weights);
        Assert.Equal(DType.F64, model.ActivationDType);
        var ids = Tensor.FromArray(new long[] { 1, 4, 9, 2, 7, 3, 10, 5 }, [2, 4]);
        var targets = Tensor.FromArray(new long[] { 4, 9, 2, 7, 3, 10, 5, 0 }, [2, 4]);
        double Loss() => model.Forward(ids, targets).Loss.Item();
        var parameters = model.NamedParameters().ToList();
        parameters.Select(p => p.Tensor).ZeroGrad();
        model.Forward(ids, targets).Loss.Backward();
        const double h = 1e-6;
        using var noGrad = GradMode.NoGrad();
        foreach (var (name, p) in parameters)
        {
            var values = p.Data<double>();
            var analytic = p.Grad!.ToDoubleArray();
            var numeric = new double[p.Numel];
            for (int i = 0; i < p.Numel; i += Math.Max(1, p.Numel / 24)) // every parameter tensor, up to 24 elements each
            {
                double saved = values[p.Offset + i];
                values[p.Offset + i] = saved + h;
                double plus = Loss();
                values[p.Offset + i] = saved - h;
                double minus = Loss();
                values[p.Offset + i] = saved;
                numeric[i] = (plus - minus) / (2 * h);
                Assert.True(Math.Abs(numeric[i] - analytic[i]) <= 1e-6 + 1e-5 * Math.Abs(numeric[i]),
                    $"{name}[{i}]: backward {analytic[i]}, finite differences {numeric[i]}");
            }
        }
    }

    [Fact]
    public void Training_lowers_the_loss_and_gradients_pass_frozen_quantized_weights()
    {
        var config = new LlamaConfig(Dim: 32, HiddenDim: 64, NLayers: 2, NHeads: 4, NKvHeads: 2, VocabSize: 16, SeqLen: 16);
        var model = ManagedTensor.Models.Llama.Create(config, new Generator(3));
        var ids = Tensor.FromArray(Enumerable.Range(0, 2 * 12).Select(i => (long)(i * 5 % 16)).ToArray(), [2, 12]);
        var targets = Tensor.FromArray(Enumerable.Range(0, 2 * 12).Select(i => (long)((i + 1) * 5 % 16)).ToArray(), [2, 12]);
        var opt = new AdamW(model.NamedParameters(), lr: 3e-3);
        double first = 0, last = 0;
        for (int step = 0; step < 30; step++)
        {
            opt.ZeroGrad();
            var loss = model.Forward(ids, targets).Loss;
            loss.Backward();
            opt.Step();
            if (step == 0) first = loss.Item();
            last = loss.Item();
        }
        Assert.True(last < first * 0.5, $"loss {first} -> {last}");

        // The matrices in Q8_0 (frozen buffers, as QLoRA's base weights): gradients reach the embedding and the norms
        // through QMatMul's backward to its input; the quantized weights have none.
        var state = Weights(model).ToDictionary(kv => kv.Key, kv =>
            kv.Value.Rank == 2 && kv.Key != "model.embed_tokens.weight" ? kv.Value.Detach().To(DType.Q8_0) : kv.Value.Detach());
        state["lm_head.weight"] = state["model.embed_tokens.weight"].Detach().To(DType.Q8_0);
        var quantized = new ManagedTensor.Models.Llama(config, state);
        Assert.Equal(2 + 2 * 2, quantized.NamedParameters().Count()); // the embedding and the norms
        quantized.Forward(ids, targets).Loss.Backward();
        Assert.True(quantized.EmbedTokens.Weight.Grad!.Abs().Sum().Item() > 0);
        Assert.True(quantized.Layers[0].InputNorm.Weight.Grad!.Abs().Sum().Item() > 0);
        Assert.Null(quantized.Layers[0].Attention.Q.Weight.Grad);
    }

    [Fact]
    public void A_tied_head_is_the_embedding_and_the_rope_permutation_undoes_itself()
    {
        var model = ManagedTensor.Models.Llama.Create(Small, new Generator(1));
        Assert.True(model.TiedHead);
        Assert.DoesNotContain("lm_head.weight", model.StateDict().Keys);
        var w = model.StateDict()["model.layers.0.self_attn.q_proj.weight"];
        var twice = ManagedTensor.Models.Llama.PermuteRopeRows(
            ManagedTensor.Models.Llama.PermuteRopeRows(w, Small.NHeads, RopeLayout.Interleaved, RopeLayout.HalfSplit), Small.NHeads, RopeLayout.HalfSplit, RopeLayout.Interleaved);
        Assert.Equal(w.ToDoubleArray(), twice.ToDoubleArray());
        var e = Assert.Throws<ArgumentException>(() => new ManagedTensor.Models.Llama(Small, new Dictionary<string, Tensor>(Weights(model)) { ["model.norm.weight"] = Tensor.Ones([31]) }));
        Assert.Contains("model.norm.weight", e.Message);
        Assert.Contains("[32]", e.Message);
    }
}

/// <summary>The same model on the GPU backend (ILGPU's CPU accelerator): single tokens take the decode attention kernel, reading the cache in place.</summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class LlamaModelGpuBackendTests
{
    [Fact]
    public void Gpu_backend_gives_the_reference_logits()
    {
        using var cpu = LlamaBench.RandomLlama(LlamaModelTests.Small, GgmlType.F32, seed: 3);
        using var model = new ManagedTensor.Models.Llama(LlamaModelTests.Small, LlamaModelTests.Weights(cpu), Device.IlgpuCpu);
        Assert.Equal(Device.IlgpuCpu, model.StateDict()["model.layers.0.self_attn.q_proj.weight"].Device);
        LlamaModelTests.AssertChunksMatchTheReference(model, LlamaModelTests.Small, LlamaModelTests.Weights(cpu), 1e-4);
    }

    /// <summary>
    /// Q4_0 weights stay Q4_0 on the device (QMatMul's fallback decodes them per product, exactly); F16 weights stay F16
    /// (widened per product here; CUDA runs the half GEMM).
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0, null, 1e-3)]
    [InlineData(GgmlType.F32, DType.F16, 1e-4)]
    public void Stored_formats_stay_on_the_device(GgmlType type, DType? floatWeights, double tol)
    {
        using var cpu = LlamaBench.RandomLlama(LlamaModelTests.Narrow, type, seed: 5);
        using var model = new ManagedTensor.Models.Llama(LlamaModelTests.Narrow, LlamaModelTests.Weights(cpu), Device.IlgpuCpu, floatWeights);
        var q = model.StateDict()["model.layers.0.self_attn.k_proj.weight"];
        Assert.Equal(floatWeights ?? GgmlTypes.ToDType(type), q.DType);
        Assert.Equal(Device.IlgpuCpu, q.Device);
        var reference = LlamaModelTests.Weights(cpu).ToDictionary(kv => kv.Key, kv => floatWeights is { } f && kv.Value.Rank == 2 ? kv.Value.To(f) : kv.Value);
        LlamaModelTests.AssertChunksMatchTheReference(model, LlamaModelTests.Narrow, reference, tol);
    }

    [Fact]
    public void Stories260K_greedy_tokens_equal_the_numpy_reference()
    {
        // Five tokens: on ILGPU's CPU accelerator each decode step emulates ~175 kernel launches of 64 threads and
        // costs seconds; the CPU backend's test (Stories260KTests) checks all 200 of the reference.
        using var model = Llama2c.Load(RepoPaths.Stories260K, Device.IlgpuCpu);
        var want = File.ReadAllLines(RepoPaths.Of("tests", "fixtures", "stories260K", "greedy200.txt")).Select(int.Parse).Take(5);
        using var cache = model.NewCache(1, 64);
        var got = new List<int>();
        int tok = 1;
        for (int p = 0; p < 5; p++) got.Add(tok = Sampler.ArgMax(model.NextLogits([tok], cache)));
        Assert.Equal(want, got);
    }
}
