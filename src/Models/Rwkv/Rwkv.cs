using ManagedTensor.Models.Training;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.Rwkv;

/// <summary>
/// An RWKV-6 language model's sizes: n_embd C split into C / head_size WKV heads; the feed-forward is 3.5 C wide
/// (RWKV-6's dim_ffn, rounded to a multiple of 32); the data-dependent token-shift and decay LoRAs are 32 and 64
/// wide (RWKV-LM's choices for small models).
/// </summary>
public sealed record RwkvConfig(int VocabSize, int NLayer, int NEmbd, int HeadSize = 32, int MixRank = 32, int DecayRank = 64) : IModelConfig
{
    public int NHead => NEmbd / HeadSize;
    public int DimFfn => (int)(NEmbd * 3.5) / 32 * 32;

    public void Validate()
    {
        if (VocabSize <= 0 || NLayer <= 0 || NEmbd <= 0 || HeadSize <= 0 || MixRank <= 0 || DecayRank <= 0)
            throw new ArgumentException($"RWKV config: every size must be positive: {this}");
        if (NEmbd % HeadSize != 0) throw new ArgumentException($"RWKV config: n_embd {NEmbd} is not a multiple of head_size {HeadSize}");
    }
}

/// <summary>
/// Token shift, the one place RWKV looks at the previous token outside WKV: x (B, T, C) and the token before it
/// (B, C) to the previous tokens (B, T, C). Returns the shifted sequence and the new "previous" (the last token).
/// </summary>
internal static class TokenShift
{
    public static (Tensor Prev, Tensor Last) Apply(Tensor x, Tensor? before)
    {
        int b = x.Shape[0], t = x.Shape[1], c = x.Shape[2];
        var first = (before ?? Tensor.Zeros([b, c], x.DType, x.Device)).Unsqueeze(1);        // (B, 1, C)
        var prev = t == 1 ? first : Tensor.Cat([first, x.Narrow(1, 0, t - 1)], 1);            // (B, T, C)
        return (prev, x.Narrow(1, t - 1, 1).Squeeze(1).Contiguous());
    }
}

/// <summary>
/// RWKV-6's time mixing (RWKV-LM v6 RWKV_Tmix_x060): data-dependent interpolation between each token and the one
/// before it (ddlerp, a rank-32 LoRA per target), then r, k, v, a gate g, and a data-dependent decay
/// logw = -exp(time_decay + LoRA(x_w)); WKV over heads; a per-head GroupNorm, the gate, and the output projection.
/// Init follows RWKV-LM: the mixing ratios and decay depend on the layer's depth, u ("time_faaaa") on the channel.
/// </summary>
public sealed class TimeMix : Module
{
    private readonly RwkvConfig _c;

    public TimeMix(RwkvConfig c, int layer, Generator gen, Device device)
    {
        _c = c;
        int n = c.NEmbd;
        double r01 = c.NLayer > 1 ? (double)layer / (c.NLayer - 1) : 0, r1a0 = 1 - (double)layer / c.NLayer;
        float[] Ramp(Func<double, double> f) => Enumerable.Range(0, n).Select(i => (float)f((double)i / n)).ToArray();
        MaaX = Parameter("time_maa_x", Tensor.FromArray(Ramp(d => 1 - Math.Pow(d, r1a0)), [n], device));
        MaaWkvrg = Parameter("time_maa_wkvrg", Tensor.FromArray(new[]
        {
            Ramp(d => 1 - Math.Pow(d, r1a0)), Ramp(d => 1 - Math.Pow(d, r1a0)), Ramp(d => 1 - (Math.Pow(d, r1a0) + 0.3 * r01)),
            Ramp(d => 1 - Math.Pow(d, 0.5 * r1a0)), Ramp(d => 1 - Math.Pow(d, 0.5 * r1a0)),
        }.SelectMany(v => v).ToArray(), [5, n], device));
        MaaW1 = Parameter("time_maa_w1", Init.Normal([n, 5 * c.MixRank], 1e-4, gen, device));
        MaaW2 = Parameter("time_maa_w2", Init.Normal([5, c.MixRank, n], 0.01, gen, device));
        TimeDecay = Parameter("time_decay", Tensor.FromArray(Enumerable.Range(0, n).Select(i => (float)(-6 + 5 * Math.Pow((double)i / (n - 1 + 1e-9), 0.7 + 1.3 * r01))).ToArray(), [n], device));
        DecayW1 = Parameter("time_decay_w1", Tensor.Zeros([n, c.DecayRank], DType.F32, device));
        DecayW2 = Parameter("time_decay_w2", Init.Normal([c.DecayRank, n], 0.01, gen, device));
        Faaaa = Parameter("time_faaaa", Tensor.FromArray(Enumerable.Range(0, n).Select(i => (float)(r01 * (1 - (double)i / (n - 1 + 1e-9)) + ((i + 1) % 3 - 1) * 0.1)).ToArray(), [c.NHead, c.HeadSize], device));
        Receptance = Child("receptance", new Linear(n, n, false, gen, device));
        Key = Child("key", new Linear(n, n, false, gen, device));
        Value = Child("value", new Linear(n, n, false, gen, device));
        Gate = Child("gate", new Linear(n, n, false, gen, device));
        Output = Child("output", new Linear(n, n, false, gen, device, initStd: 0.02 / Math.Sqrt(2 * c.NLayer)));
        LnXWeight = Parameter("ln_x.weight", Tensor.Ones([n], DType.F32, device));
        LnXBias = Parameter("ln_x.bias", Tensor.Zeros([n], DType.F32, device));
    }

    public Tensor MaaX { get; }      // (C)
    public Tensor MaaWkvrg { get; }  // (5, C): base ratios for w, k, v, r, g
    public Tensor MaaW1 { get; }     // (C, 5 * MixRank)
    public Tensor MaaW2 { get; }     // (5, MixRank, C)
    public Tensor TimeDecay { get; } // (C)
    public Tensor DecayW1 { get; }   // (C, DecayRank)
    public Tensor DecayW2 { get; }   // (DecayRank, C)
    public Tensor Faaaa { get; }     // (H, K): the bonus u of the current token
    public Linear Receptance { get; }
    public Linear Key { get; }
    public Linear Value { get; }
    public Linear Gate { get; }
    public Linear Output { get; }
    public Tensor LnXWeight { get; } // (C)
    public Tensor LnXBias { get; }   // (C)

    /// <summary>x (B, T, C) to (B, T, C). With <paramref name="state"/> (decoding, T = 1): slot 0 the previous token, slot 1 the WKV state of <paramref name="layer"/>.</summary>
    public Tensor Forward(Tensor x, RecurrentState? state, int layer)
    {
        int b = x.Shape[0], t = x.Shape[1], n = _c.NEmbd, h = _c.NHead, k = _c.HeadSize, m = _c.MixRank;
        var (prev, last) = TokenShift.Apply(x, state?[layer, 0]);
        if (state is not null) state[layer, 0] = last;
        var xx = prev - x;                                                                    // (B, T, C)
        var xxx = (x + xx * MaaX).Reshape(-1, n).MatMul(MaaW1).Tanh();                        // (BT, 5m)
        var lora = xxx.Reshape(-1, 5, m).Transpose(0, 1).MatMul(MaaW2);                        // (5, BT, m) @ (5, m, C) -> (5, BT, C)
        Tensor Mixed(int i) => x + xx * (MaaWkvrg.Narrow(0, i, 1).Squeeze(0) + lora.Narrow(0, i, 1).Reshape(b, t, n)); // (B, T, C)
        Tensor xw = Mixed(0), xk = Mixed(1), xv = Mixed(2), xr = Mixed(3), xg = Mixed(4);
        Tensor Heads(Tensor z) => z.Reshape(b, t, h, k);                                      // (B, T, H, K)
        var r = Heads(Receptance.Forward(xr));
        var kk = Heads(Key.Forward(xk));
        var v = Heads(Value.Forward(xv));
        var g = Gate.Forward(xg).Silu();                                                      // (B, T, C)
        var ww = xw.Reshape(-1, n).MatMul(DecayW1).Tanh().MatMul(DecayW2).Reshape(b, t, n);   // (B, T, C)
        var logw = Heads((TimeDecay + ww).Exp().Neg());                                       // log of the decay, < 0
        Tensor y;                                                                             // (B, T, H, K)
        if (state is null) y = Tensor.Wkv6(r.Contiguous(), kk.Contiguous(), v.Contiguous(), logw.Contiguous(), Faaaa);
        else
        {
            if (t != 1) throw new ArgumentException($"RWKV: a recurrent step takes one token per sequence, got {x.Describe()}");
            Tensor One(Tensor z) => z.Reshape(b, h, k);
            var (yt, s) = WkvOps.Step(state[layer, 1], One(r), One(kk), One(v), One(logw), Faaaa);
            state[layer, 1] = s;
            y = yt.Reshape(b, 1, h, k);
        }
        // GroupNorm with one group per head (eps 64e-5, RWKV-6's head_size_divisor 8 squared times 1e-5).
        var normed = y.LayerNorm(null, null, 64e-5).Reshape(b, t, n) * LnXWeight + LnXBias;   // (B, T, C)
        return Output.Forward(normed * g);
    }
}

/// <summary>
/// RWKV-6's channel mixing (RWKV_CMix_x060): token shift with learned ratios, then a squared-ReLU feed-forward
/// gated by sigmoid(receptance): σ(W_r x_r) ⊙ W_v relu(W_k x_k)².
/// </summary>
public sealed class ChannelMix : Module
{
    public ChannelMix(RwkvConfig c, int layer, Generator gen, Device device)
    {
        int n = c.NEmbd;
        double r1a0 = 1 - (double)layer / c.NLayer;
        var ramp = Enumerable.Range(0, n).Select(i => (float)(1 - Math.Pow((double)i / n, r1a0))).ToArray();
        MaaK = Parameter("time_maa_k", Tensor.FromArray(ramp, [n], device));
        MaaR = Parameter("time_maa_r", Tensor.FromArray(ramp, [n], device));
        Key = Child("key", new Linear(n, c.DimFfn, false, gen, device));
        Receptance = Child("receptance", new Linear(n, n, false, gen, device));
        Value = Child("value", new Linear(c.DimFfn, n, false, gen, device, initStd: 0.02 / Math.Sqrt(2 * c.NLayer)));
    }

    public Tensor MaaK { get; } // (C)
    public Tensor MaaR { get; } // (C)
    public Linear Key { get; }
    public Linear Receptance { get; }
    public Linear Value { get; }

    /// <summary>x (B, T, C) to (B, T, C); with <paramref name="state"/>, slot 2 is the previous token of <paramref name="layer"/>.</summary>
    public Tensor Forward(Tensor x, RecurrentState? state, int layer)
    {
        var (prev, last) = TokenShift.Apply(x, state?[layer, 2]);
        if (state is not null) state[layer, 2] = last;
        var xx = prev - x;
        var k = Key.Forward(x + xx * MaaK).Relu().Square();                                   // (B, T, F)
        return Receptance.Forward(x + xx * MaaR).Sigmoid() * Value.Forward(k);                // (B, T, C)
    }
}

/// <summary>
/// The RWKV-6 language model: embedding, LayerNorm ln0, n_layer blocks x + att(ln1(x)), x + ffn(ln2(x)), the
/// final LayerNorm and an untied head. Every cross-token path is WKV or token shift, so decoding carries three
/// tensors per layer (two previous tokens and a K x K state per head) and costs the same at every position.
/// </summary>
public sealed class RwkvLM : RecurrentLM
{
    public RwkvLM(RwkvConfig config, Generator init, Device? device = null, ulong dropoutSeed = 0) : base(config, device, dropoutSeed)
    {
        Config = config;
        int n = config.NEmbd;
        Emb = Child("emb", new Embedding(config.VocabSize, n, init, Device, initStd: 1e-4));
        Ln0 = Child("ln0", new LayerNorm(n, true, Device));
        Ln1 = Child("ln1", new ModuleList<LayerNorm>(Enumerable.Range(0, config.NLayer).Select(_ => new LayerNorm(n, true, Device))));
        Ln2 = Child("ln2", new ModuleList<LayerNorm>(Enumerable.Range(0, config.NLayer).Select(_ => new LayerNorm(n, true, Device))));
        Att = Child("att", new ModuleList<TimeMix>(Enumerable.Range(0, config.NLayer).Select(l => new TimeMix(config, l, init, Device))));
        Ffn = Child("ffn", new ModuleList<ChannelMix>(Enumerable.Range(0, config.NLayer).Select(l => new ChannelMix(config, l, init, Device))));
        LnOut = Child("ln_out", new LayerNorm(n, true, Device));
        HeadLayer = Child("head", new Linear(n, config.VocabSize, false, init, Device, initStd: 0.5 / Math.Sqrt(Math.Max(config.VocabSize, n))));
    }

    public RwkvConfig Config { get; }
    public override string Architecture => "rwkv";
    public override int VocabSize => Config.VocabSize;

    public Embedding Emb { get; }
    public LayerNorm Ln0 { get; }
    public ModuleList<LayerNorm> Ln1 { get; }
    public ModuleList<LayerNorm> Ln2 { get; }
    public ModuleList<TimeMix> Att { get; }
    public ModuleList<ChannelMix> Ffn { get; }
    public LayerNorm LnOut { get; }
    public Linear HeadLayer { get; }

    public override Tensor Logits(Tensor idx)
    {
        if (idx.Rank != 2) throw new ArgumentException($"RWKV: input ids must be (B, T), got {idx.Describe()}");
        return Blocks(Emb.Forward(idx), null);                                                 // (B, T, V)
    }

    public override RecurrentState NewState(int batch)
    {
        var s = new RecurrentState(batch, Config.NLayer, 3);
        for (int l = 0; l < Config.NLayer; l++)
        {
            s[l, 0] = Tensor.Zeros([batch, Config.NEmbd], DType.F32, Device);                                    // att's previous token
            s[l, 1] = Tensor.Zeros([batch, Config.NHead, Config.HeadSize, Config.HeadSize], DType.F32, Device);  // WKV state
            s[l, 2] = Tensor.Zeros([batch, Config.NEmbd], DType.F32, Device);                                    // ffn's previous token
        }
        return s;
    }

    public override Tensor Step(Tensor ids, RecurrentState state)
    {
        if (ids.Rank != 1 || ids.Shape[0] != state.Batch || state.Layers != Config.NLayer)
            throw new ArgumentException($"RWKV: a step takes ids (B) = [{state.Batch}] for a state of {state.Layers} layers (model: {Config.NLayer}), got {ids.Describe()}");
        return Blocks(Emb.Forward(ids.Reshape(-1, 1)), state).Reshape(ids.Shape[0], Config.VocabSize); // (B, V)
    }

    private Tensor Blocks(Tensor x, RecurrentState? state)
    {
        x = Ln0.Forward(x);                                                                    // (B, T, C)
        for (int l = 0; l < Config.NLayer; l++)
        {
            x = x + Att[l].Forward(Ln1[l].Forward(x), state, l);
            x = x + Ffn[l].Forward(Ln2[l].Forward(x), state, l);
        }
        return HeadLayer.Forward(LnOut.Forward(x));                                            // (B, T, V)
    }

    /// <summary>`mt train rwkv`: the preset sizes it near the GPT CPU recipe's 0.8M parameters (3 layers of 128, 4 heads of 32: 0.83M).</summary>
    public static readonly ArchDef Arch = new(
        "rwkv", "train an RWKV-6 (Finch: linear attention with data-dependent decay) on a text file; defaults: tiny Shakespeare, ~0.8M parameters",
        ["n-layer", "n-embd", "head-size"],
        new Dictionary<string, TrainConfig>
        {
            [Architectures.DefaultPreset] = new TrainConfig { Arch = "rwkv", NLayer = 3, OutDir = "out-rwkv-char" },
            ["shakespeare-char"] = Presets.ShakespeareChar(new TrainConfig { Arch = "rwkv", NLayer = 6, NEmbd = 384, HeadSize = 64, OutDir = "out-rwkv-char" }),
        },
        typeof(RwkvConfig),
        (c, vocab) => new RwkvConfig(vocab, c.NLayer, c.NEmbd, c.HeadSize),
        (config, init, device, dropoutSeed) => new RwkvLM((RwkvConfig)config, init, device, dropoutSeed),
        c =>
        {
            if (c.NEmbd % c.HeadSize != 0) throw new UserErrorException($"--n-embd {c.NEmbd} must be a multiple of --head-size {c.HeadSize}");
        });
}
