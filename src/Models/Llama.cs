using System.Numerics.Tensors;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;

namespace ManagedTensor.Models;

/// <summary>Which dimensions of a head RoPE rotates together.</summary>
public enum RopeLayout
{
    /// <summary>Pairs (2i, 2i+1): Meta's original Llama, llama2.c, and GGUF files (llama.cpp's "normal" rope).</summary>
    Interleaved,
    /// <summary>Pairs (i, i + head_size/2): Hugging Face checkpoints (rotate_half).</summary>
    HalfSplit,
}

/// <summary>Llama 3.1's frequency-dependent RoPE scaling (long wavelengths are slowed down by Factor).</summary>
public sealed record Llama3RopeScaling(float Factor, float LowFreqFactor, float HighFreqFactor, int OriginalContextLength);

/// <summary>The shape of a Llama model. HeadSize = Dim / NHeads; keys and values have NKvHeads heads (GQA).</summary>
public sealed record LlamaConfig(
    int Dim, int HiddenDim, int NLayers, int NHeads, int NKvHeads, int VocabSize, int SeqLen,
    float NormEps = 1e-5f, float RopeTheta = 10000f, RopeLayout Rope = RopeLayout.Interleaved,
    Llama3RopeScaling? RopeScaling = null)
{
    public int HeadSize => Dim / NHeads;
    public int KvDim => HeadSize * NKvHeads;

    /// <summary>Throws unless the shape is consistent (heads divide dim, KV heads divide heads, even head size).</summary>
    public void Validate()
    {
        if (Dim <= 0 || HiddenDim <= 0 || NLayers <= 0 || NHeads <= 0 || NKvHeads <= 0 || VocabSize <= 0 || SeqLen <= 0)
            throw new ArgumentException($"Llama config has a non-positive size: {this}");
        if (Dim % NHeads != 0) throw new ArgumentException($"dim {Dim} is not divisible by n_heads {NHeads}");
        if (NHeads % NKvHeads != 0) throw new ArgumentException($"n_heads {NHeads} is not divisible by n_kv_heads {NKvHeads}");
        if (HeadSize % 2 != 0) throw new ArgumentException($"head size {HeadSize} must be even for RoPE");
    }

    /// <summary>RoPE's per-pair frequencies theta^(-2i/head_size), i < head_size/2, with Llama 3 scaling if set.</summary>
    public double[] RopeFrequencies()
    {
        var f = new double[HeadSize / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double freq = 1.0 / Math.Pow(RopeTheta, 2.0 * i / HeadSize);
            if (RopeScaling is { } s)
            {
                // Wavelengths shorter than old_ctx/high_freq_factor keep their frequency, longer than
                // old_ctx/low_freq_factor are divided by Factor, and those in between blend linearly in 1/wavelength.
                double wavelen = 2 * Math.PI / freq;
                double lowWavelen = s.OriginalContextLength / s.LowFreqFactor, highWavelen = s.OriginalContextLength / s.HighFreqFactor;
                if (wavelen > lowWavelen) freq /= s.Factor;
                else if (wavelen >= highWavelen)
                {
                    double smooth = (s.OriginalContextLength / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    freq = (1 - smooth) * freq / s.Factor + smooth * freq;
                }
            }
            f[i] = freq;
        }
        return f;
    }
}

/// <summary>One transformer block's weights. Matrices are (out, in): y = W x.</summary>
public sealed record LlamaLayer(
    float[] AttnNorm,      // (dim)
    WeightMatrix Wq,       // (n_heads * head_size, dim)
    WeightMatrix Wk,       // (kv_dim, dim)
    WeightMatrix Wv,       // (kv_dim, dim)
    WeightMatrix Wo,       // (dim, n_heads * head_size)
    float[] FfnNorm,       // (dim)
    WeightMatrix W1,       // (hidden, dim)  gate
    WeightMatrix W2,       // (dim, hidden)  down
    WeightMatrix W3);      // (hidden, dim)  up

/// <summary>All weights of a Llama model. <see cref="Classifier"/> is the same object as the embedding when tied.</summary>
public sealed record LlamaWeights(
    WeightMatrix TokenEmbedding,  // (vocab, dim)
    LlamaLayer[] Layers,
    float[] FinalNorm,            // (dim)
    WeightMatrix Classifier)      // (vocab, dim)
{
    public bool SharedClassifier => ReferenceEquals(TokenEmbedding, Classifier);

    public long ParameterCount(LlamaConfig c) =>
        (long)c.VocabSize * c.Dim * (SharedClassifier ? 1 : 2) + c.Dim
        + (long)c.NLayers * (2L * c.Dim + 2L * c.Dim * c.Dim + 2L * c.KvDim * c.Dim + 3L * c.HiddenDim * c.Dim);
}

/// <summary>
/// The Llama decoder, one token at a time (as llama2.c's forward): for each layer
///   x += Wo · attention(RoPE(Wq · rms(x)), RoPE(Wk · rms(x)), Wv · rms(x))   (GQA: query head h reads KV head h / (n_heads / n_kv_heads))
///   x += W2 · (silu(W1 · rms(x)) * (W3 · rms(x)))                               (SwiGLU)
/// then logits = Wcls · rms(x). rms(x) = w * x / sqrt(mean(x^2) + eps).
/// It runs on float spans with the weight matrices' own MatVec (which handles F16 and quantized weights) because
/// decoding is a chain of matrix-vector products; there is no autograd here.
/// </summary>
public sealed class Llama
{
    public LlamaConfig Config { get; }
    public LlamaWeights Weights { get; }

    private readonly float[] _cos, _sin; // (seq_len, head_size/2)

    // Scratch activations, reused across tokens (a model instance decodes one sequence at a time).
    private readonly float[] _x, _xb, _xb2, _q, _k, _v, _att, _hb, _hb2, _logits;

    public Llama(LlamaConfig config, LlamaWeights weights)
    {
        config.Validate();
        Config = config; Weights = weights;
        CheckShape(weights.TokenEmbedding, config.VocabSize, config.Dim, "token embedding");
        CheckShape(weights.Classifier, config.VocabSize, config.Dim, "classifier");
        if (weights.Layers.Length != config.NLayers) throw new ArgumentException($"{weights.Layers.Length} layers given, config says {config.NLayers}");
        foreach (var (l, i) in weights.Layers.Select((l, i) => (l, i)))
        {
            CheckShape(l.Wq, config.Dim, config.Dim, $"layer {i} wq"); CheckShape(l.Wk, config.KvDim, config.Dim, $"layer {i} wk");
            CheckShape(l.Wv, config.KvDim, config.Dim, $"layer {i} wv"); CheckShape(l.Wo, config.Dim, config.Dim, $"layer {i} wo");
            CheckShape(l.W1, config.HiddenDim, config.Dim, $"layer {i} w1"); CheckShape(l.W2, config.Dim, config.HiddenDim, $"layer {i} w2");
            CheckShape(l.W3, config.HiddenDim, config.Dim, $"layer {i} w3");
        }

        var freqs = config.RopeFrequencies();
        int half = config.HeadSize / 2;
        _cos = new float[config.SeqLen * half]; _sin = new float[config.SeqLen * half];
        for (int p = 0; p < config.SeqLen; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = (float)(p * freqs[i]);
                _cos[p * half + i] = MathF.Cos(angle); _sin[p * half + i] = MathF.Sin(angle);
            }

        _x = new float[config.Dim]; _xb = new float[config.Dim]; _xb2 = new float[config.Dim];
        _q = new float[config.Dim]; _k = new float[config.KvDim]; _v = new float[config.KvDim];
        _att = new float[config.SeqLen]; _hb = new float[config.HiddenDim]; _hb2 = new float[config.HiddenDim];
        _logits = new float[config.VocabSize];
    }

    private static void CheckShape(WeightMatrix w, int rows, int cols, string name)
    {
        if (w.Rows != rows || w.Cols != cols) throw new ArgumentException($"{name}: shape ({w.Rows}, {w.Cols}), expected ({rows}, {cols})");
    }

    public KvCache NewCache() => new(Config.NLayers, Config.SeqLen, Config.KvDim);

    /// <summary>Runs <paramref name="token"/> at position <paramref name="pos"/>, appending its keys and values to the cache. Returns the logits (vocab), valid until the next call.</summary>
    public float[] Forward(int token, int pos, KvCache cache)
    {
        var c = Config;
        if ((uint)token >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(token), $"token {token} outside vocabulary of {c.VocabSize}");
        if ((uint)pos >= (uint)c.SeqLen) throw new ArgumentOutOfRangeException(nameof(pos), $"position {pos} beyond the context length {c.SeqLen}");
        int hs = c.HeadSize, kvDim = c.KvDim, groups = c.NHeads / c.NKvHeads;
        float scale = 1f / MathF.Sqrt(hs);

        Weights.TokenEmbedding.ReadRow(token, _x);                             // (dim)
        for (int l = 0; l < c.NLayers; l++)
        {
            var w = Weights.Layers[l];
            RmsNorm(_xb, _x, w.AttnNorm, c.NormEps);
            w.Wq.MatVec(_xb, _q);                                              // (dim)
            w.Wk.MatVec(_xb, _k);                                              // (kv_dim)
            w.Wv.MatVec(_xb, _v);                                              // (kv_dim)
            for (int h = 0; h < c.NHeads; h++) Rope(_q.AsSpan(h * hs, hs), pos);
            for (int h = 0; h < c.NKvHeads; h++) Rope(_k.AsSpan(h * hs, hs), pos);
            _k.CopyTo(cache.Keys[l].AsSpan(pos * kvDim, kvDim));
            _v.CopyTo(cache.Values[l].AsSpan(pos * kvDim, kvDim));

            for (int h = 0; h < c.NHeads; h++)
            {
                var q = _q.AsSpan(h * hs, hs);
                int kvOff = h / groups * hs;
                var att = _att.AsSpan(0, pos + 1);                            // (pos+1) scores over the past
                for (int t = 0; t <= pos; t++)
                    att[t] = TensorPrimitives.Dot(q, cache.Keys[l].AsSpan(t * kvDim + kvOff, hs)) * scale;
                Softmax(att);
                var o = _xb.AsSpan(h * hs, hs);                               // (head_size) weighted sum of values
                o.Clear();
                for (int t = 0; t <= pos; t++)
                    TensorPrimitives.MultiplyAdd(cache.Values[l].AsSpan(t * kvDim + kvOff, hs), att[t], o, o);
            }
            w.Wo.MatVec(_xb, _xb2);
            TensorPrimitives.Add(_x, _xb2, _x);                                // residual

            RmsNorm(_xb, _x, w.FfnNorm, c.NormEps);
            w.W1.MatVec(_xb, _hb);                                             // (hidden) gate
            w.W3.MatVec(_xb, _hb2);                                            // (hidden) up
            for (int i = 0; i < c.HiddenDim; i++)
            {
                float g = _hb[i];
                _hb[i] = g / (1f + MathF.Exp(-g)) * _hb2[i];                    // silu(gate) * up
            }
            w.W2.MatVec(_hb, _xb);
            TensorPrimitives.Add(_x, _xb, _x);                                 // residual
        }
        RmsNorm(_x, _x, Weights.FinalNorm, c.NormEps);
        Weights.Classifier.MatVec(_x, _logits);                               // (vocab)
        return _logits;
    }

    /// <summary>o = w * x / sqrt(mean(x^2) + eps).</summary>
    public static void RmsNorm(Span<float> o, ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps)
    {
        float ss = 0;
        foreach (float v in x) ss += v * v;
        float inv = 1f / MathF.Sqrt(ss / x.Length + eps);
        for (int i = 0; i < x.Length; i++) o[i] = w[i] * (inv * x[i]);
    }

    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x), sum = 0;
        for (int i = 0; i < x.Length; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        for (int i = 0; i < x.Length; i++) x[i] /= sum;
    }

    /// <summary>Rotates each pair of one head by angle pos * freq_i: (a, b) -> (a cos - b sin, a sin + b cos).</summary>
    private void Rope(Span<float> head, int pos)
    {
        int half = head.Length / 2;
        var cos = _cos.AsSpan(pos * half, half);
        var sin = _sin.AsSpan(pos * half, half);
        for (int i = 0; i < half; i++)
        {
            // Interleaved pairs (2i, 2i+1); half-split pairs (i, i + half).
            int ia = Config.Rope == RopeLayout.Interleaved ? 2 * i : i;
            int ib = Config.Rope == RopeLayout.Interleaved ? 2 * i + 1 : i + half;
            float a = head[ia], b = head[ib];
            head[ia] = a * cos[i] - b * sin[i];
            head[ib] = a * sin[i] + b * cos[i];
        }
    }

    /// <summary>
    /// The row permutation between the two RoPE layouts for a Q or K weight (n_heads * head_size, dim).
    /// HF's convert_hf_to_gguf "permute" maps half-split rows to interleaved:
    ///   w.reshape(n_heads, 2, head_size/2, dim).swapaxes(1, 2).reshape(n_heads*head_size, dim)
    /// so interleaved row h*hs + 2i + j is half-split row h*hs + j*hs/2 + i (j = 0, 1).
    /// Permuting Q and K rows this way and switching <see cref="LlamaConfig.Rope"/> leaves the model's outputs unchanged.
    /// </summary>
    public static float[] PermuteRopeRows(float[] w, int nHeads, int headSize, int cols, RopeLayout from, RopeLayout to)
    {
        if (from == to) return w;
        if (w.Length != (long)nHeads * headSize * cols) throw new ArgumentException($"PermuteRopeRows: {w.Length} values is not ({nHeads} * {headSize}, {cols})");
        var o = new float[w.Length];
        int half = headSize / 2;
        for (int h = 0; h < nHeads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                {
                    int inter = h * headSize + 2 * i + j, split = h * headSize + j * half + i;
                    int src = from == RopeLayout.HalfSplit ? split : inter, dst = from == RopeLayout.HalfSplit ? inter : split;
                    Array.Copy(w, (long)src * cols, o, (long)dst * cols, cols);
                }
        return o;
    }
}
