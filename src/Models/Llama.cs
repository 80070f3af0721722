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
/// The Llama decoder over T new tokens (T = 1 when decoding, the prompt when prefilling), as llama2.c's forward:
/// for each layer
///   x += Wo · attention(RoPE(Wq · rms(x)), RoPE(Wk · rms(x)), Wv · rms(x))   (GQA: query head h reads KV head h / (n_heads / n_kv_heads))
///   x += W2 · (silu(W1 · rms(x)) * (W3 · rms(x)))                               (SwiGLU)
/// then logits = Wcls · rms(x). rms(x) = w * x / sqrt(mean(x^2) + eps).
/// It runs on float spans with the weight matrices' own MatVec / MatMul (which handle F16 and quantized weights
/// without a float32 copy) because decoding is a chain of matrix-vector products; inference needs no autograd.
/// Not thread-safe: one instance runs one sequence at a time (its scratch buffers are reused).
/// </summary>
public sealed class Llama
{
    public LlamaConfig Config { get; }
    public LlamaWeights Weights { get; }

    private readonly double[] _freqs; // (head_size/2) RoPE frequencies; angles are computed per position, no (seq_len, ...) table

    // Scratch activations for T tokens, reused across calls (a model instance runs one sequence at a time).
    private Activations _act;
    private readonly float[] _logits;

    private sealed class Activations(LlamaConfig c, int capacity)
    {
        public readonly int Capacity = capacity;
        public readonly float[] X = new float[capacity * c.Dim], Xb = new float[capacity * c.Dim], Xb2 = new float[capacity * c.Dim];   // (T, dim)
        public readonly float[] Q = new float[capacity * c.Dim], K = new float[capacity * c.KvDim], V = new float[capacity * c.KvDim];  // (T, dim), (T, kv_dim)
        public readonly float[] Hb = new float[capacity * c.HiddenDim], Hb2 = new float[capacity * c.HiddenDim];                        // (T, hidden)
        public readonly float[] Att = new float[c.SeqLen];                                                                              // scores of one head
        public readonly float[] Cos = new float[capacity * c.HeadSize / 2], Sin = new float[capacity * c.HeadSize / 2];                 // (T, head_size/2)
    }

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

        _freqs = config.RopeFrequencies();
        _act = new Activations(config, 1);
        _logits = new float[config.VocabSize];
    }

    private static void CheckShape(WeightMatrix w, int rows, int cols, string name)
    {
        if (w.Rows != rows || w.Cols != cols) throw new ArgumentException($"{name}: shape ({w.Rows}, {w.Cols}), expected ({rows}, {cols})");
    }

    /// <summary>A KV cache for <paramref name="length"/> positions (default: the model's whole context).</summary>
    public KvCache NewCache(int length = 0)
    {
        if (length < 0 || length > Config.SeqLen) throw new ArgumentOutOfRangeException(nameof(length), $"cache length {length} must be in [1, context length {Config.SeqLen}]");
        return new(Config.NLayers, length == 0 ? Config.SeqLen : length, Config.KvDim);
    }

    /// <summary>Runs <paramref name="token"/> at position <paramref name="pos"/>, appending its keys and values to the cache. Returns the logits (vocab), valid until the next call.</summary>
    public float[] Forward(int token, int pos, KvCache cache) => Forward([token], pos, cache);

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions startPos, startPos+1, ... (causal: each attends to the cache and to the
    /// tokens before it), appending their keys and values to the cache; returns the last token's logits (vocab).
    /// One token (decode) uses matrix-vector products; several (prefill) use one matrix-matrix product per weight.
    /// </summary>
    public float[] Forward(ReadOnlySpan<int> tokens, int startPos, KvCache cache)
    {
        var c = Config;
        int T = tokens.Length;
        if (T == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (startPos < 0 || startPos + T > cache.SeqLen) throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{startPos + T - 1} go beyond the cache length {cache.SeqLen}");
        foreach (int tok in tokens)
            if ((uint)tok >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token {tok} outside vocabulary of {c.VocabSize}");
        if (_act.Capacity < T) _act = new Activations(c, T);
        var a = _act;
        int dim = c.Dim, hs = c.HeadSize, kvDim = c.KvDim, hidden = c.HiddenDim, groups = c.NHeads / c.NKvHeads;
        float scale = 1f / MathF.Sqrt(hs);
        var x = a.X.AsSpan(0, T * dim);                                        // (T, dim) residual stream
        var xb = a.Xb.AsSpan(0, T * dim);
        for (int t = 0; t < T; t++) Weights.TokenEmbedding.ReadRow(tokens[t], x.Slice(t * dim, dim));
        int half = hs / 2;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < half; i++)
            {
                float angle = (float)((startPos + t) * _freqs[i]);                // RoPE angle pos * freq_i
                a.Cos[t * half + i] = MathF.Cos(angle); a.Sin[t * half + i] = MathF.Sin(angle);
            }

        for (int l = 0; l < c.NLayers; l++)
        {
            var w = Weights.Layers[l];
            for (int t = 0; t < T; t++) RmsNorm(xb.Slice(t * dim, dim), x.Slice(t * dim, dim), w.AttnNorm, c.NormEps);
            Linear(w.Wq, xb, a.Q, T);                                          // (T, dim)
            Linear(w.Wk, xb, a.K, T);                                          // (T, kv_dim)
            Linear(w.Wv, xb, a.V, T);                                          // (T, kv_dim)
            for (int t = 0; t < T; t++)
            {
                int pos = startPos + t;
                var cos = a.Cos.AsSpan(t * half, half);
                var sin = a.Sin.AsSpan(t * half, half);
                for (int h = 0; h < c.NHeads; h++) Rope(a.Q.AsSpan(t * dim + h * hs, hs), cos, sin);
                for (int h = 0; h < c.NKvHeads; h++) Rope(a.K.AsSpan(t * kvDim + h * hs, hs), cos, sin);
                a.K.AsSpan(t * kvDim, kvDim).CopyTo(cache.Keys[l].AsSpan(pos * kvDim, kvDim));
                a.V.AsSpan(t * kvDim, kvDim).CopyTo(cache.Values[l].AsSpan(pos * kvDim, kvDim));
            }

            for (int t = 0; t < T; t++)
            {
                int pos = startPos + t;
                for (int h = 0; h < c.NHeads; h++)
                {
                    var q = a.Q.AsSpan(t * dim + h * hs, hs);
                    int kvOff = h / groups * hs;                               // GQA: the KV head this query head reads
                    var att = a.Att.AsSpan(0, pos + 1);                        // (pos+1) scores over the past
                    for (int p = 0; p <= pos; p++)
                        att[p] = TensorPrimitives.Dot(q, cache.Keys[l].AsSpan(p * kvDim + kvOff, hs)) * scale;
                    Softmax(att);
                    var o = xb.Slice(t * dim + h * hs, hs);                    // (head_size) weighted sum of values
                    o.Clear();
                    for (int p = 0; p <= pos; p++)
                        TensorPrimitives.MultiplyAdd(cache.Values[l].AsSpan(p * kvDim + kvOff, hs), att[p], o, o);
                }
            }
            Linear(w.Wo, xb, a.Xb2, T);
            TensorPrimitives.Add(x, a.Xb2.AsSpan(0, T * dim), x);              // residual

            for (int t = 0; t < T; t++) RmsNorm(xb.Slice(t * dim, dim), x.Slice(t * dim, dim), w.FfnNorm, c.NormEps);
            Linear(w.W1, xb, a.Hb, T);                                         // (T, hidden) gate
            Linear(w.W3, xb, a.Hb2, T);                                        // (T, hidden) up
            for (int i = 0; i < T * hidden; i++)
            {
                float g = a.Hb[i];
                a.Hb[i] = g / (1f + MathF.Exp(-g)) * a.Hb2[i];                  // silu(gate) * up
            }
            Linear(w.W2, a.Hb, xb, T);
            TensorPrimitives.Add(x, xb, x);                                    // residual
        }
        var last = x.Slice((T - 1) * dim, dim);                                // only the last position's logits are needed
        RmsNorm(last, last, Weights.FinalNorm, c.NormEps);
        Weights.Classifier.MatVec(last, _logits);                             // (vocab)
        return _logits;
    }

    /// <summary>y (T, rows) = x (T, cols) W^T.</summary>
    private static void Linear(WeightMatrix w, ReadOnlySpan<float> x, Span<float> y, int T)
    {
        if (T == 1) w.MatVec(x[..w.Cols], y[..w.Rows]);
        else w.MatMul(x[..(T * w.Cols)], y[..(T * w.Rows)], T);
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
    private void Rope(Span<float> head, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = head.Length / 2;
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
