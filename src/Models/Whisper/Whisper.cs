using ManagedTensor.Nn;

namespace ManagedTensor.Models.Whisper;

/// <summary>
/// Whisper's multi-head attention, one class for its three uses (Radford et al. 2022; names as Hugging Face's
/// WhisperAttention): the encoder's self-attention over audio frames, the decoder's causal self-attention over
/// tokens, and its cross-attention from tokens to the encoded audio. q_proj, v_proj and out_proj have biases,
/// k_proj has none (a bias on k adds the same amount to every score of a query, which softmax ignores).
/// The attention itself is the engine's fused op, scale 1 / sqrt(head size).
/// </summary>
public sealed class WhisperAttention : Module
{
    public WhisperAttention(int dim, int heads, Generator gen, Device device)
    {
        Heads = heads;
        HeadSize = dim / heads;
        Q = Child("q_proj", new Linear(dim, dim, true, gen, device));
        K = Child("k_proj", new Linear(dim, dim, false, gen, device));
        V = Child("v_proj", new Linear(dim, dim, true, gen, device));
        Out = Child("out_proj", new Linear(dim, dim, true, gen, device));
    }

    public int Heads { get; }
    public int HeadSize { get; }
    public Linear Q { get; }
    public Linear K { get; }
    public Linear V { get; }
    public Linear Out { get; }

    /// <summary>Keys and values of <paramref name="source"/> (B, S, C), each (B, H, S, hs): what cross-attention computes once per audio.</summary>
    public (Tensor K, Tensor V) KeysValues(Tensor source) => (SplitHeads(K.Forward(source)), SplitHeads(V.Forward(source)));

    /// <summary>Self-attention of x (B, T, C); with <paramref name="cache"/> the tokens follow the cached ones (decoding).</summary>
    public Tensor SelfAttend(Tensor x, bool causal, KvCache.Layer? cache = null)
    {
        var (k, v) = KeysValues(x);
        if (cache is not null) (k, v) = cache.Append(k, v);                       // (B, H, past + T, hs)
        return Attend(x, k, v, causal);
    }

    /// <summary>Attention of x's queries (B, T, C) over given keys and values (B, H, S, hs): (B, T, C).</summary>
    public Tensor Attend(Tensor x, Tensor k, Tensor v, bool causal)
    {
        int b = x.Shape[0], t = x.Shape[1];
        var y = Tensor.Attention(SplitHeads(Q.Forward(x)), k, v, causal);             // (B, H, T, hs)
        return Out.Forward(y.Transpose(1, 2).Contiguous().Reshape(b, t, Heads * HeadSize));
    }

    /// <summary>(B, T, H hs) -> (B, H, T, hs).</summary>
    private Tensor SplitHeads(Tensor x) => x.Reshape(x.Shape[0], x.Shape[1], Heads, HeadSize).Transpose(1, 2);
}

/// <summary>The position-wise MLP of every Whisper layer: fc1 (C -> ffn), GELU (erf form), fc2 (ffn -> C).</summary>
internal static class WhisperMlp
{
    public static Tensor Forward(Linear fc1, Linear fc2, Tensor x) => fc2.Forward(fc1.Forward(x).Gelu());
}

/// <summary>An encoder layer, pre-norm: x + self_attn(LN(x)), then x + fc2(gelu(fc1(LN(x)))).</summary>
public sealed class WhisperEncoderLayer : Module
{
    public WhisperEncoderLayer(WhisperConfig c, Generator gen, Device device)
    {
        SelfAttnNorm = Child("self_attn_layer_norm", new LayerNorm(c.DModel, true, device));
        SelfAttn = Child("self_attn", new WhisperAttention(c.DModel, c.EncoderHeads, gen, device));
        FinalNorm = Child("final_layer_norm", new LayerNorm(c.DModel, true, device));
        Fc1 = Child("fc1", new Linear(c.DModel, c.EncoderFfn, true, gen, device));
        Fc2 = Child("fc2", new Linear(c.EncoderFfn, c.DModel, true, gen, device));
    }

    public LayerNorm SelfAttnNorm { get; }
    public WhisperAttention SelfAttn { get; }
    public LayerNorm FinalNorm { get; }
    public Linear Fc1 { get; }
    public Linear Fc2 { get; }

    public Tensor Forward(Tensor x) // (B, S, C)
    {
        x += SelfAttn.SelfAttend(SelfAttnNorm.Forward(x), causal: false);
        return x + WhisperMlp.Forward(Fc1, Fc2, FinalNorm.Forward(x));
    }
}

/// <summary>A decoder layer, pre-norm: causal self-attention, cross-attention to the audio, MLP, each added to x.</summary>
public sealed class WhisperDecoderLayer : Module
{
    public WhisperDecoderLayer(WhisperConfig c, Generator gen, Device device)
    {
        SelfAttnNorm = Child("self_attn_layer_norm", new LayerNorm(c.DModel, true, device));
        SelfAttn = Child("self_attn", new WhisperAttention(c.DModel, c.DecoderHeads, gen, device));
        CrossAttnNorm = Child("encoder_attn_layer_norm", new LayerNorm(c.DModel, true, device));
        CrossAttn = Child("encoder_attn", new WhisperAttention(c.DModel, c.DecoderHeads, gen, device));
        FinalNorm = Child("final_layer_norm", new LayerNorm(c.DModel, true, device));
        Fc1 = Child("fc1", new Linear(c.DModel, c.DecoderFfn, true, gen, device));
        Fc2 = Child("fc2", new Linear(c.DecoderFfn, c.DModel, true, gen, device));
    }

    public LayerNorm SelfAttnNorm { get; }
    public WhisperAttention SelfAttn { get; }
    public LayerNorm CrossAttnNorm { get; }
    public WhisperAttention CrossAttn { get; }
    public LayerNorm FinalNorm { get; }
    public Linear Fc1 { get; }
    public Linear Fc2 { get; }

    /// <summary>x (B, T, C); <paramref name="cross"/> the audio's keys and values for this layer (B, H, S, hs).</summary>
    public Tensor Forward(Tensor x, (Tensor K, Tensor V) cross, KvCache.Layer? cache)
    {
        x += SelfAttn.SelfAttend(SelfAttnNorm.Forward(x), causal: true, cache);
        x += CrossAttn.Attend(CrossAttnNorm.Forward(x), cross.K, cross.V, causal: false);
        return x + WhisperMlp.Forward(Fc1, Fc2, FinalNorm.Forward(x));
    }
}

/// <summary>
/// The audio encoder: a stem of two convolutions with GELU (conv1 n_mels -> C, kernel 3; conv2 C -> C, kernel 3,
/// stride 2, halving 3000 frames to 1500), fixed sinusoidal positions (a buffer; Hugging Face stores it as
/// embed_positions.weight), pre-norm transformer layers and a final LayerNorm.
/// </summary>
public sealed class WhisperEncoder : Module
{
    public WhisperEncoder(WhisperConfig c, Generator gen, Device device)
    {
        Config = c;
        Conv1 = Child("conv1", new Conv1d(c.NMels, c.DModel, 3, gen, device, stride: 1, padding: 1));
        Conv2 = Child("conv2", new Conv1d(c.DModel, c.DModel, 3, gen, device, stride: 2, padding: 1));
        Positions = Buffer("embed_positions.weight", Sinusoids(c.MaxSourcePositions, c.DModel).To(device));
        Layers = Child("layers", new ModuleList<WhisperEncoderLayer>(Enumerable.Range(0, c.EncoderLayers).Select(_ => new WhisperEncoderLayer(c, gen, device))));
        Norm = Child("layer_norm", new LayerNorm(c.DModel, true, device));
    }

    public WhisperConfig Config { get; }
    public Conv1d Conv1 { get; }
    public Conv1d Conv2 { get; }
    public Tensor Positions { get; } // (max_source_positions, C)
    public ModuleList<WhisperEncoderLayer> Layers { get; }
    public LayerNorm Norm { get; }

    /// <summary>mel (B, n_mels, F), F &lt;= 2 max_source_positions (Whisper itself always feeds 3000) -> audio features (B, ceil(F / 2), C).</summary>
    public Tensor Forward(Tensor mel)
    {
        if (mel.Rank != 3 || mel.Shape[1] != Config.NMels || mel.Shape[2] < 1 || mel.Shape[2] > Config.InputFrames)
            throw new ArgumentException($"Whisper encoder: mel {mel.Describe()} must be (B, {Config.NMels}, frames) with 1..{Config.InputFrames} frames");
        var x = Conv1.Forward(mel).Gelu();                                  // (B, C, F)
        x = Conv2.Forward(x).Gelu();                                        // (B, C, S), S = ceil(F / 2)
        int s = x.Shape[2];
        x = x.Transpose(1, 2) + Positions.Narrow(0, 0, s);                  // (B, S, C)
        foreach (var layer in Layers.Items) x = layer.Forward(x);
        return Norm.Forward(x);
    }

    /// <summary>
    /// openai/whisper's sinusoids(length, channels): row t is [sin(t w_0), ..., sin(t w_{C/2-1}), cos(t w_0), ...] with
    /// w_i = 10000^(-i / (C/2 - 1)), timescales spread geometrically from 1 to 10000 (computed in double precision).
    /// </summary>
    public static Tensor Sinusoids(int length, int channels)
    {
        int half = channels / 2;
        double increment = Math.Log(10000) / (half - 1);
        var v = new float[length * channels];
        for (int t = 0; t < length; t++)
            for (int i = 0; i < half; i++)
            {
                double a = t * Math.Exp(-increment * i);
                v[t * channels + i] = (float)Math.Sin(a);
                v[t * channels + half + i] = (float)Math.Cos(a);
            }
        return Tensor.FromArray(v, [length, channels]);
    }
}

/// <summary>
/// The text decoder: token embedding plus learned positions, pre-norm layers with causal self-attention and
/// cross-attention to the audio, a final LayerNorm, and the output head tied to the token embedding
/// (logits = x E^T; Hugging Face's proj_out shares embed_tokens).
/// </summary>
public sealed class WhisperDecoder : Module
{
    public WhisperDecoder(WhisperConfig c, Generator gen, Device device)
    {
        Config = c;
        Tokens = Child("embed_tokens", new Embedding(c.VocabSize, c.DModel, gen, device, initStd: 0.02));
        Positions = Child("embed_positions", new Embedding(c.MaxTargetPositions, c.DModel, gen, device, initStd: 0.02));
        Layers = Child("layers", new ModuleList<WhisperDecoderLayer>(Enumerable.Range(0, c.DecoderLayers).Select(_ => new WhisperDecoderLayer(c, gen, device))));
        Norm = Child("layer_norm", new LayerNorm(c.DModel, true, device));
    }

    public WhisperConfig Config { get; }
    public Embedding Tokens { get; }
    public Embedding Positions { get; }
    public ModuleList<WhisperDecoderLayer> Layers { get; }
    public LayerNorm Norm { get; }

    /// <summary>Each layer's cross-attention keys and values of the encoded audio (B, S, C): computed once per audio.</summary>
    public (Tensor K, Tensor V)[] CrossKeysValues(Tensor audio) => Layers.Items.Select(l => l.CrossAttn.KeysValues(audio)).ToArray();

    /// <summary>
    /// tokens (B, T) -> logits (B, T, V), or (B, 1, V) of the last position unless <paramref name="allPositions"/>.
    /// With <paramref name="cache"/> the tokens continue the cached ones (positions cache.Length, ...) and are appended.
    /// </summary>
    public Tensor Forward(Tensor tokens, (Tensor K, Tensor V)[] cross, KvCache? cache = null, bool allPositions = true)
    {
        if (tokens.Rank != 2) throw new ArgumentException($"Whisper decoder: tokens {tokens.Describe()} must be (B, T)");
        int t = tokens.Shape[1], start = cache?.Length ?? 0;
        if (start + t > Config.MaxTargetPositions)
            throw new ArgumentException($"Whisper decoder: positions {start}..{start + t - 1} go past max_target_positions {Config.MaxTargetPositions}");
        var pos = Tensor.Arange(start, start + t, 1, DType.I64, tokens.Device);
        var x = Tokens.Forward(tokens) + Positions.Forward(pos);                   // (B, T, C)
        for (int l = 0; l < Layers.Count; l++) x = Layers[l].Forward(x, cross[l], cache?.Layers[l]);
        cache?.Advance(t);
        x = Norm.Forward(allPositions ? x : x.Narrow(1, t - 1, 1));
        var logits = x.Reshape(-1, Config.DModel).MatMul(Tokens.Weight.MT);       // (B T, V)
        return logits.Reshape(x.Shape[0], x.Shape[1], Config.VocabSize);
    }
}

/// <summary>
/// Whisper: an audio encoder and a text decoder that attends to it, named as Hugging Face's
/// WhisperForConditionalGeneration ("model.encoder.conv1.weight", "model.decoder.layers.0.encoder_attn.k_proj.weight"),
/// so its state dict is a Hugging Face checkpoint's (proj_out.weight is the tied embedding, not stored twice).
/// Weights start from PyTorch's default init (embeddings N(0, 0.02)) and are replaced when a checkpoint is loaded.
/// </summary>
public sealed class WhisperModel : Module
{
    public WhisperModel(WhisperConfig config, Generator gen, Device? device = null)
    {
        config.Validate();
        Config = config;
        Device = device ?? Device.Cpu;
        Encoder = Child("model.encoder", new WhisperEncoder(config, gen, Device));
        Decoder = Child("model.decoder", new WhisperDecoder(config, gen, Device));
    }

    public WhisperConfig Config { get; }
    public Device Device { get; }
    public WhisperEncoder Encoder { get; }
    public WhisperDecoder Decoder { get; }

    /// <summary>mel (B, n_mels, F) -> audio features (B, F / 2, C).</summary>
    public Tensor Encode(Tensor mel) => Encoder.Forward(mel);

    /// <summary>Teacher-forced logits of every position (B, T, V): training and the reference for cached decoding.</summary>
    public Tensor Logits(Tensor mel, Tensor tokens) => Decoder.Forward(tokens, Decoder.CrossKeysValues(Encode(mel)));

    /// <summary>Mean cross-entropy of predicting <paramref name="targets"/> (B, T; -100 ignored) from <paramref name="tokens"/> (B, T).</summary>
    public Tensor Loss(Tensor mel, Tensor tokens, Tensor targets) => Functional.CrossEntropy(Logits(mel, tokens), targets, ignoreIndex: -100);

    /// <summary>A decoding session over encoded audio (1, S, C) for <paramref name="batch"/> hypotheses (beams).</summary>
    public WhisperDecoding StartDecoding(Tensor audio, int batch = 1)
    {
        if (audio.Rank != 3 || audio.Shape[0] != 1) throw new ArgumentException($"Whisper: decoding takes one encoded audio (1, S, C), got {audio.Describe()}");
        var rows = batch == 1 ? audio : audio.Expand(batch, audio.Shape[1], audio.Shape[2]).Contiguous();
        var cache = new KvCache(Config.DecoderLayers, batch, Config.DecoderHeads, Config.MaxTargetPositions, Config.DModel / Config.DecoderHeads, DType.F32, Device);
        return new WhisperDecoding(this, Decoder.CrossKeysValues(rows), cache);
    }
}

/// <summary>
/// The state of decoding one audio: the self-attention KV cache of the tokens so far (one row per hypothesis) and the
/// cross-attention keys and values of the audio, computed once when decoding starts (every token attends to the same
/// audio, so recomputing them each step would repeat the same 2 L projections of all S frames).
/// </summary>
public sealed class WhisperDecoding(WhisperModel model, (Tensor K, Tensor V)[] cross, KvCache cache) : IDisposable
{
    public KvCache Cache { get; } = cache;
    public int Length => Cache.Length;

    /// <summary>The new tokens (B, T) after the cached ones: logits of the last position, (B, V).</summary>
    public Tensor Step(Tensor tokens)
    {
        var logits = model.Decoder.Forward(tokens, cross, Cache, allPositions: false); // (B, 1, V)
        return logits.Reshape(logits.Shape[0], logits.Shape[2]);
    }

    /// <summary>Row b continues what row rows[b] held (beam search keeps the best continuations of each beam).</summary>
    public void SelectRows(int[] rows) => Cache.SelectRows(rows);

    public void Dispose() => Cache.Dispose();
}
