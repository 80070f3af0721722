using ManagedTensor.Models.Training;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.Mamba;

/// <summary>
/// A Mamba-1 language model's sizes (mamba_simple.py's defaults: d_state 16, d_conv 4, expand 2, dt_rank =
/// ceil(d_model / 16)). Bias is that of in_proj and out_proj (Mamba: none).
/// </summary>
public sealed record MambaConfig(int VocabSize, int NLayer, int DModel, int DState = 16, int DConv = 4, int Expand = 2, bool Bias = false) : IModelConfig
{
    public int DInner => Expand * DModel;
    public int DtRank => (DModel + 15) / 16;

    public void Validate()
    {
        if (VocabSize <= 0 || NLayer <= 0 || DModel <= 0 || DState <= 0 || DConv <= 0 || Expand <= 0)
            throw new ArgumentException($"Mamba config: every size must be positive: {this}");
    }
}

/// <summary>
/// Mamba's mixer (Gu and Dao 2023, mamba_simple.py), on a sequence or one token at a time:
///   x, z = in_proj(u)                                 (B, T, E) each, E = expand * d_model
///   x = silu(causal depthwise conv(x))                (B, T, E)
///   Δ_raw, B, C = x_proj(x)                           (B, T, R), (B, T, N), (B, T, N)
///   Δ = softplus(dt_proj(Δ_raw))                      (B, T, E), positive
///   y = selective_scan(x, Δ, A = -exp(A_log), B, C, D) ⊙ silu(z)
///   out = out_proj(y)                                 (B, T, d_model)
/// Init as mamba_simple.py: A_log = log(1..N) per channel (S4D-real), D = 1, dt_proj's bias the inverse softplus of
/// a log-uniform Δ in [0.001, 0.1], dt_proj's weight U(+-R^-0.5).
/// </summary>
public sealed class MambaMixer : Module
{
    private readonly MambaConfig _c;

    public MambaMixer(MambaConfig c, Generator gen, Device device)
    {
        _c = c;
        int e = c.DInner, n = c.DState, r = c.DtRank;
        InProj = Child("in_proj", new Linear(c.DModel, 2 * e, c.Bias, gen, device));
        Conv = Child("conv1d", new CausalConv1d(e, c.DConv, gen, device));
        XProj = Child("x_proj", new Linear(e, r + 2 * n, bias: false, gen, device));
        DtProj = Child("dt_proj", new Linear(r, e, bias: true, gen, device));
        var dtStd = Math.Pow(r, -0.5);
        using (GradMode.NoGrad()) DtProj.Weight.CopyFrom_(Tensor.Rand([e, r], gen, -dtStd, dtStd, DType.F32, device));
        // softplus^-1(Δ) = Δ + log(1 - e^-Δ) for Δ = exp(U(log 0.001, log 0.1)).
        var dt = Tensor.Rand([e], gen, Math.Log(1e-3), Math.Log(0.1), DType.F64).Exp().ToDoubleArray();
        using (GradMode.NoGrad()) DtProj.Bias!.CopyFrom_(Tensor.FromArray(dt.Select(v => (float)(v + Math.Log(1 - Math.Exp(-v)))).ToArray(), [e], device));
        ALog = Parameter("A_log", Tensor.FromArray(Enumerable.Range(0, e).SelectMany(_ => Enumerable.Range(1, n).Select(i => (float)Math.Log(i))).ToArray(), [e, n], device));
        D = Parameter("D", Tensor.Ones([e], DType.F32, device));
        OutProj = Child("out_proj", new Linear(e, c.DModel, c.Bias, gen, device));
    }

    public Linear InProj { get; }
    public CausalConv1d Conv { get; }
    public Linear XProj { get; }
    public Linear DtProj { get; }
    public Tensor ALog { get; } // (E, N)
    public Tensor D { get; }    // (E)
    public Linear OutProj { get; }

    /// <summary>u (B, T, d_model) to (B, T, d_model). With <paramref name="state"/> (decoding, T = 1) the conv window and SSM state of <paramref name="layer"/> continue and advance.</summary>
    public Tensor Forward(Tensor u, RecurrentState? state = null, int layer = 0)
    {
        int b = u.Shape[0], t = u.Shape[1], e = _c.DInner, n = _c.DState, r = _c.DtRank;
        var xz = InProj.Forward(u);                                                      // (B, T, 2E)
        var x = xz.Narrow(2, 0, e);                                                       // (B, T, E)
        var z = xz.Narrow(2, e, e);                                                       // (B, T, E)
        var (conv, prefix) = Conv.Forward(x, state?[layer, 0]);
        if (state is not null) state[layer, 0] = prefix;
        x = conv.Silu();                                                                  // (B, T, E)
        var dbc = XProj.Forward(x);                                                       // (B, T, R + 2N)
        var delta = Softplus(DtProj.Forward(dbc.Narrow(2, 0, r)));                         // (B, T, E)
        var bm = dbc.Narrow(2, r, n).Contiguous();                                        // (B, T, N)
        var cm = dbc.Narrow(2, r + n, n).Contiguous();                                    // (B, T, N)
        var a = ALog.Exp().Neg();                                                         // (E, N)
        Tensor y;
        if (state is null) y = Tensor.SelectiveScan(x.Contiguous(), delta, a, bm, cm, D);  // (B, T, E)
        else
        {
            if (t != 1) throw new ArgumentException($"Mamba: a recurrent step takes one token per sequence, got {u.Describe()}");
            var (yt, h) = ScanOps.Step(state[layer, 1], x.Reshape(b, e), delta.Reshape(b, e), a, bm.Reshape(b, n), cm.Reshape(b, n), D);
            state[layer, 1] = h;
            y = yt.Reshape(b, 1, e);
        }
        return OutProj.Forward(y * z.Silu());                                             // (B, T, d_model)
    }

    /// <summary>softplus(x) = log(1 + e^x), computed as max(x, 0) + log(1 + e^-|x|) so it never overflows.</summary>
    private static Tensor Softplus(Tensor x) => x.Relu() + x.Abs().Neg().Exp().AddScalar(1).Log();
}

/// <summary>
/// The Mamba language model (mamba_simple's MambaLMHeadModel): embedding, n_layer residual blocks
/// x + mixer(RMSNorm(x)), a final RMSNorm and an output head tied to the embedding. No position embedding:
/// the scan is the only way information moves along the sequence, so any length can be decoded.
/// </summary>
public sealed class MambaLM : RecurrentLM
{
    public MambaLM(MambaConfig config, Generator init, Device? device = null, ulong dropoutSeed = 0) : base(config, device, dropoutSeed)
    {
        Config = config;
        Embedding = Child("backbone.embedding", new Embedding(config.VocabSize, config.DModel, init, Device, initStd: 0.02));
        Norms = Child("backbone.norms", new ModuleList<RmsNorm>(Enumerable.Range(0, config.NLayer).Select(_ => new RmsNorm(config.DModel, Device))));
        Mixers = Child("backbone.mixers", new ModuleList<MambaMixer>(Enumerable.Range(0, config.NLayer).Select(_ => new MambaMixer(config, init, Device))));
        NormF = Child("backbone.norm_f", new RmsNorm(config.DModel, Device));
    }

    public MambaConfig Config { get; }
    public override string Architecture => "mamba";
    public override int VocabSize => Config.VocabSize;

    public Embedding Embedding { get; }
    public ModuleList<RmsNorm> Norms { get; }
    public ModuleList<MambaMixer> Mixers { get; }
    public RmsNorm NormF { get; }

    public override Tensor Logits(Tensor idx)
    {
        if (idx.Rank != 2) throw new ArgumentException($"Mamba: input ids must be (B, T), got {idx.Describe()}");
        return Head(Blocks(Embedding.Forward(idx), null));                                 // (B, T, V)
    }

    public override RecurrentState NewState(int batch)
    {
        var s = new RecurrentState(batch, Config.NLayer, 2);
        for (int l = 0; l < Config.NLayer; l++)
        {
            s[l, 0] = Tensor.Zeros([batch, Config.DConv - 1, Config.DInner], DType.F32, Device);   // conv window
            s[l, 1] = Tensor.Zeros([batch, Config.DInner, Config.DState], DType.F32, Device);      // SSM state h
        }
        return s;
    }

    public override Tensor Step(Tensor ids, RecurrentState state)
    {
        if (ids.Rank != 1 || ids.Shape[0] != state.Batch || state.Layers != Config.NLayer)
            throw new ArgumentException($"Mamba: a step takes ids (B) = [{state.Batch}] for a state of {state.Layers} layers (model: {Config.NLayer}), got {ids.Describe()}");
        var x = Embedding.Forward(ids.Reshape(-1, 1));                                      // (B, 1, C)
        return Head(Blocks(x, state)).Reshape(ids.Shape[0], Config.VocabSize);             // (B, V)
    }

    private Tensor Blocks(Tensor x, RecurrentState? state)
    {
        for (int l = 0; l < Config.NLayer; l++) x = x + Mixers[l].Forward(Norms[l].Forward(x), state, l);
        return NormF.Forward(x);                                                           // (B, T, C)
    }

    /// <summary>The tied output head: logits = x embeddingᵀ.</summary>
    private Tensor Head(Tensor x) =>
        x.Reshape(-1, Config.DModel).MatMul(Embedding.Weight.MT).Reshape([.. x.Shape[..^1], Config.VocabSize]);

    /// <summary>`mt train mamba`: the preset sizes it near the GPT CPU recipe's 0.8M parameters (7 layers of 128: 0.82M).</summary>
    public static readonly ArchDef Arch = new(
        "mamba", "train a Mamba (selective state space model) on a text file; defaults: tiny Shakespeare, ~0.8M parameters",
        ["n-layer", "n-embd", "d-state", "d-conv", "expand", "bias"],
        new Dictionary<string, TrainConfig>
        {
            [Architectures.DefaultPreset] = new TrainConfig { Arch = "mamba", NLayer = 7, OutDir = "out-mamba-char" },
            ["shakespeare-char"] = Presets.ShakespeareChar(new TrainConfig { Arch = "mamba", NLayer = 12, NEmbd = 384, OutDir = "out-mamba-char" }),
        },
        typeof(MambaConfig),
        (c, vocab) => new MambaConfig(vocab, c.NLayer, c.NEmbd, c.DState, c.DConv, c.Expand, c.Bias),
        (config, init, device, dropoutSeed) => new MambaLM((MambaConfig)config, init, device, dropoutSeed));
}
