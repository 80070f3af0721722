using ManagedTensor.Nn;

namespace ManagedTensor.Models;

/// <summary>
/// The Llama decoder of <see cref="Llama"/> written with tensor ops instead of float spans, so it runs on
/// any backend: on a GPU the matrix products are the GEMM kernels, RMS norm is one kernel, and a single
/// new token attends to the KV cache through <see cref="Tensor.Attention"/>'s split-KV decode kernel
/// (grouped-query heads read their shared KV head directly). Per layer, with h = rms(x):
///   x += Wo attention(RoPE(h Wq^T), RoPE(h Wk^T), h Wv^T)      x += (silu(h W1^T) * (h W3^T)) W2^T
/// Weight matrices are decoded to <c>dtype</c> tensors on the device once (quantized GGUF weights are
/// expanded: a GPU int4 matmul is not here yet); with F16 or BF16 the activations are cast to it for
/// each matrix product (fp32 accumulation), and everything else (norms, RoPE, attention, the cache)
/// stays float32. The span model stays the CPU path (it multiplies quantized rows without expanding
/// them); this one is checked against it token by token.
/// </summary>
public sealed class DeviceLlama : ILlamaRunner, IDisposable
{
    private sealed record Layer(Tensor AttnNorm, Tensor Wq, Tensor Wk, Tensor Wv, Tensor Wo, Tensor FfnNorm, Tensor W1, Tensor W2, Tensor W3);

    private readonly Tensor _embedding, _classifier, _finalNorm; // (V, dim), (V, dim) (the same tensor when tied), (dim)
    private readonly Layer[] _layers;
    private readonly double[] _freqs;
    private readonly AttentionKvCache _cache;

    /// <param name="cacheLength">positions the KV cache holds (at most the model's context)</param>
    public DeviceLlama(LlamaConfig config, LlamaWeights weights, Device device, int cacheLength, DType dtype = DType.F32)
    {
        config.Validate();
        if (cacheLength <= 0 || cacheLength > config.SeqLen)
            throw new ArgumentOutOfRangeException(nameof(cacheLength), $"cache length {cacheLength} must be in [1, context length {config.SeqLen}]");
        if (dtype is not (DType.F32 or DType.F16 or DType.BF16)) throw new ArgumentException($"DeviceLlama: weights as {dtype}? F32, F16 or BF16", nameof(dtype));
        Config = config;
        Device = device;
        WeightDType = dtype;
        _freqs = config.RopeFrequencies();
        _cache = new AttentionKvCache(config.NLayers, 1, config.NKvHeads, cacheLength, config.HeadSize, DType.F32, device);
        Tensor Mat(Formats.WeightMatrix w) => Tensor.FromArray(w.ToF32(), [w.Rows, w.Cols]).To(dtype).To(device);
        Tensor Vec(float[] v) => Tensor.FromArray(v).To(device);
        using var weightsCategory = DeviceMemory.Category(MemoryCategory.Weights); // what the allocator counts them as
        _embedding = Mat(weights.TokenEmbedding);
        _classifier = weights.SharedClassifier ? _embedding : Mat(weights.Classifier);
        _finalNorm = Vec(weights.FinalNorm);
        _layers = weights.Layers.Select(l => new Layer(Vec(l.AttnNorm), Mat(l.Wq), Mat(l.Wk), Mat(l.Wv), Mat(l.Wo),
            Vec(l.FfnNorm), Mat(l.W1), Mat(l.W2), Mat(l.W3))).ToArray();
    }

    /// <summary>The span model's weights on <paramref name="device"/>.</summary>
    public static DeviceLlama From(Llama model, Device device, int cacheLength, DType dtype = DType.F32) =>
        new(model.Config, model.Weights, device, cacheLength, dtype);

    public LlamaConfig Config { get; }
    public Device Device { get; }
    public DType WeightDType { get; }
    public int CacheLength => _cache.Capacity;

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions startPos, startPos + 1, ... after the first startPos cached
    /// positions (anything cached after those is forgotten) and returns the last token's logits.
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, int startPos)
    {
        var c = Config;
        int t = tokens.Length, hs = c.HeadSize;
        if (t == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (startPos < 0 || startPos > _cache.Length || startPos + t > _cache.Capacity)
            throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{startPos + t - 1} with {_cache.Length} cached, cache length {_cache.Capacity}");
        var ids = new long[t];
        for (int i = 0; i < t; i++)
            ids[i] = (uint)tokens[i] < (uint)c.VocabSize ? tokens[i] : throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tokens[i]} outside vocabulary of {c.VocabSize}");
        _cache.Truncate(startPos);
        using var scope = DeviceMemory.Scope();
        using var noGrad = GradMode.NoGrad();
        var (cos, sin) = RopeTables(startPos, t);
        var x = _embedding.IndexSelect(0, Tensor.FromArray(ids, [t], Device)).To(DType.F32); // (T, dim)
        for (int l = 0; l < c.NLayers; l++)
        {
            var w = _layers[l];
            var h = x.RmsNorm(w.AttnNorm, c.NormEps);
            var q = Rope(Heads(Linear(h, w.Wq), c.NHeads), cos, sin);                      // (1, H, T, hs)
            var k = Rope(Heads(Linear(h, w.Wk), c.NKvHeads), cos, sin);                    // (1, Hkv, T, hs)
            var v = Heads(Linear(h, w.Wv), c.NKvHeads);
            var (keys, values) = _cache.Layers[l].Append(k, v);                              // (1, Hkv, startPos + T, hs)
            var o = Tensor.Attention(q, keys, values, causal: true);                         // bottom-right causal: the cache is the past
            x += Linear(o.Transpose(1, 2).Contiguous().Reshape(t, c.Dim), w.Wo);
            h = x.RmsNorm(w.FfnNorm, c.NormEps);
            x += Linear(Linear(h, w.W1).Silu() * Linear(h, w.W3), w.W2);                     // SwiGLU
        }
        _cache.Advance(t);
        var last = x.Narrow(0, t - 1, 1).RmsNorm(_finalNorm, c.NormEps);                      // (1, dim)
        return Linear(last, _classifier).To(Device.Cpu).ToArray<float>();                     // (V)
    }

    /// <summary>x (T, in) W^T for W (out, in), in the weights' dtype with a float32 result.</summary>
    private Tensor Linear(Tensor x, Tensor w) =>
        WeightDType == DType.F32 ? x.MatMul(w.MT) : x.To(WeightDType).MatMul(w.MT).To(DType.F32);

    /// <summary>(T, n * hs) -> (1, n, T, hs).</summary>
    private Tensor Heads(Tensor x, int n) => x.Reshape(1, x.Shape[0], n, Config.HeadSize).Transpose(1, 2);

    /// <summary>cos and sin of pos * freq_i for the T positions, (T, hs/2), made on the host (T x hs/2 numbers) and copied over.</summary>
    private (Tensor Cos, Tensor Sin) RopeTables(int startPos, int t)
    {
        int half = Config.HeadSize / 2;
        var cos = new float[t * half];
        var sin = new float[t * half];
        for (int p = 0; p < t; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = (float)((startPos + p) * _freqs[i]);   // in float32, as the span model
                cos[p * half + i] = MathF.Cos(angle);
                sin[p * half + i] = MathF.Sin(angle);
            }
        return (Tensor.FromArray(cos, [t, half], Device), Tensor.FromArray(sin, [t, half], Device));
    }

    /// <summary>
    /// Rotates each pair of every head (1, n, T, hs) by its position's angle: (a, b) -> (a cos - b sin, a sin + b cos).
    /// Interleaved pairs are (2i, 2i + 1), half-split pairs (i, i + hs/2).
    /// </summary>
    private Tensor Rope(Tensor x, Tensor cos, Tensor sin)
    {
        int n = x.Shape[1], t = x.Shape[2], half = Config.HeadSize / 2;
        if (Config.Rope == RopeLayout.Interleaved)
        {
            var pairs = x.Reshape(1, n, t, half, 2);
            var a = pairs.Narrow(4, 0, 1).Squeeze(4);
            var b = pairs.Narrow(4, 1, 1).Squeeze(4);                                          // (1, n, T, hs/2)
            return Tensor.Stack([a * cos - b * sin, a * sin + b * cos], axis: 4).Reshape(1, n, t, 2 * half);
        }
        var lo = x.Narrow(3, 0, half);
        var hi = x.Narrow(3, half, half);
        return Tensor.Cat([lo * cos - hi * sin, lo * sin + hi * cos], axis: 3);
    }

    public void Dispose()
    {
        _cache.Dispose();
        foreach (var t in _layers.SelectMany(l => new[] { l.AttnNorm, l.Wq, l.Wk, l.Wv, l.Wo, l.FfnNorm, l.W1, l.W2, l.W3 })) t.Dispose();
        _embedding.Dispose();
        if (!ReferenceEquals(_classifier, _embedding)) _classifier.Dispose();
        _finalNorm.Dispose();
    }
}
