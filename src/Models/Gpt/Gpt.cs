using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;

namespace ManagedTensor.Models;

/// <summary>
/// nanoGPT's model configuration. Defaults are GPT-2 small (124M); vocab 50304 is GPT-2's 50257 padded
/// up to a multiple of 64 for faster matmuls. Bias false drops the biases of Linear and LayerNorm
/// (slightly better and faster, as nanoGPT notes).
/// </summary>
public sealed record GptConfig(
    int BlockSize = 1024,
    int VocabSize = 50304,
    int NLayer = 12,
    int NHead = 12,
    int NEmbd = 768,
    double Dropout = 0.0,
    bool Bias = true) : IGptShape
{
    public void Validate()
    {
        if (BlockSize <= 0 || VocabSize <= 0 || NLayer <= 0 || NHead <= 0 || NEmbd <= 0)
            throw new ArgumentException($"GPT config: every size must be positive: {this}");
        if (NEmbd % NHead != 0) throw new ArgumentException($"GPT config: n_embd {NEmbd} is not a multiple of n_head {NHead}");
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"GPT config: dropout {Dropout} must be in [0, 1)");
    }
}

/// <summary>
/// Multi-head causal self-attention, as nanoGPT's CausalSelfAttention: one projection makes q, k and v
/// (c_attn, C -> 3C), heads attend with softmax(q k^T / sqrt(hs)) under a causal mask, and c_proj
/// mixes the heads back. The attention itself is one fused op (flash-style: no T x T matrix is kept for
/// the backward pass): <see cref="Tensor.QkvAttention"/> straight from c_attn's output in training, and
/// <see cref="Tensor.Attention"/> on (B, nh, T, hs) heads against a KV cache in generation.
/// </summary>
public sealed class CausalSelfAttention : Module
{
    private readonly Dropout _residDropout;
    private readonly Generator _dropoutGen;

    /// <param name="projStd">init std of c_proj (nanoGPT: 0.02 / sqrt(2 n_layer), one residual branch of two per layer)</param>
    public CausalSelfAttention(int nEmbd, int nHead, bool bias, double dropout, double projStd, Generator initGen, Generator dropoutGen, Device device)
    {
        if (nEmbd % nHead != 0) throw new ArgumentException($"n_embd {nEmbd} is not a multiple of n_head {nHead}");
        NEmbd = nEmbd;
        NHead = nHead;
        DropoutP = dropout;
        _dropoutGen = dropoutGen;
        CAttn = Child("c_attn", new Linear(nEmbd, 3 * nEmbd, bias, initGen, device, initStd: 0.02));
        CProj = Child("c_proj", new Linear(nEmbd, nEmbd, bias, initGen, device, initStd: projStd));
        _residDropout = Child("resid_dropout", new Dropout(dropout, dropoutGen));
    }

    public int NEmbd { get; }
    public int NHead { get; }
    public double DropoutP { get; }
    public Linear CAttn { get; }
    public Linear CProj { get; }

    /// <summary>
    /// (B, T, C) -> (B, T, C). With <paramref name="cache"/> (generation, no autograd) the T new positions
    /// follow the cached ones: their keys and values are appended, and each query attends to everything
    /// before it (the causal mask is aligned to the last key).
    /// </summary>
    public Tensor Forward(Tensor x, KvCache.Layer? cache = null)
    {
        int b = x.Shape[0], t = x.Shape[1], c = x.Shape[2], hs = c / NHead;
        if (cache is null)
        {
            // One fused op from the projection's (B, T, 3C) to the heads side by side again (B, T, C): the
            // same attention as below, without transposing q, k, v and y into and out of (B, nh, T, hs).
            var yFused = Tensor.QkvAttention(CAttn.Forward(x), NHead, causal: true, dropoutP: Training ? DropoutP : 0, gen: _dropoutGen);
            return _residDropout.Forward(CProj.Forward(yFused));
        }
        var qkv = CAttn.Forward(x).Split(NEmbd, axis: 2);                       // 3 x (B, T, C)
        var q = qkv[0].Reshape(b, t, NHead, hs).Transpose(1, 2);                // (B, nh, T, hs)
        var k = qkv[1].Reshape(b, t, NHead, hs).Transpose(1, 2);
        var v = qkv[2].Reshape(b, t, NHead, hs).Transpose(1, 2);
        (k, v) = cache.Append(k, v);                                            // (B, nh, past + T, hs)
        var y = Tensor.Attention(q, k, v, causal: true, dropoutP: Training ? DropoutP : 0, gen: _dropoutGen); // (B, nh, T, hs)
        y = y.Transpose(1, 2).Contiguous().Reshape(b, t, c);                    // heads side by side again
        return _residDropout.Forward(CProj.Forward(y));
    }
}

/// <summary>The transformer's position-wise feed-forward net: C -> 4C, GELU (exact, erf form), 4C -> C, dropout.</summary>
public sealed class Mlp : Module
{
    private readonly Dropout _dropout;

    public Mlp(int nEmbd, bool bias, double dropout, double projStd, Generator initGen, Generator dropoutGen, Device device)
    {
        CFc = Child("c_fc", new Linear(nEmbd, 4 * nEmbd, bias, initGen, device, initStd: 0.02));
        CProj = Child("c_proj", new Linear(4 * nEmbd, nEmbd, bias, initGen, device, initStd: projStd));
        _dropout = Child("dropout", new Dropout(dropout, dropoutGen));
    }

    public Linear CFc { get; }
    public Linear CProj { get; }

    public Tensor Forward(Tensor x) => _dropout.Forward(CProj.Forward(CFc.Forward(x).Gelu())); // (B, T, C)
}

/// <summary>A pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)).</summary>
public sealed class Block : Module, ICausalBlock
{
    public Block(int nEmbd, int nHead, bool bias, double dropout, double projStd, Generator initGen, Generator dropoutGen, Device device)
    {
        Ln1 = Child("ln_1", new LayerNorm(nEmbd, bias, device));
        Attn = Child("attn", new CausalSelfAttention(nEmbd, nHead, bias, dropout, projStd, initGen, dropoutGen, device));
        Ln2 = Child("ln_2", new LayerNorm(nEmbd, bias, device));
        Mlp = Child("mlp", new Mlp(nEmbd, bias, dropout, projStd, initGen, dropoutGen, device));
    }

    public LayerNorm Ln1 { get; }
    public CausalSelfAttention Attn { get; }
    public LayerNorm Ln2 { get; }
    public Mlp Mlp { get; }

    public Tensor Forward(Tensor x, KvCache.Layer? cache = null) // (B, T, C)
    {
        x += Attn.Forward(Ln1.Forward(x), cache);
        return x + Mlp.Forward(Ln2.Forward(x));
    }
}

/// <summary>What <see cref="GPT.Forward(Tensor, Tensor?, KvCache?)"/> returns: logits, and the mean cross-entropy when targets were given.</summary>
public sealed record GptOutput(Tensor Logits, Tensor? Loss);

/// <summary>
/// The GPT language model, as nanoGPT's model.py: token and position embeddings, n_layer pre-norm
/// transformer blocks, a final LayerNorm, and an output head tied to the token embedding (the same
/// (V, C) matrix embeds tokens and scores them; Press and Wolf 2017); that skeleton is
/// <see cref="GptShapedLM{TConfig, TBlock}"/>, shared with MoE-GPT and BitNet-GPT. Parameter names follow nanoGPT's
/// state dict ("transformer.h.0.attn.c_attn.weight"), which also matches Hugging Face's GPT-2 layout up
/// to Conv1D's transposed weights. Init as nanoGPT: N(0, 0.02) weights, zero biases, and residual
/// projections (c_proj) N(0, 0.02/sqrt(2 n_layer)) so the residual stream's variance does not grow
/// with depth (GPT-2 paper).
/// </summary>
public sealed class GPT : GptShapedLM<GptConfig, Block>, IActivationCheckpointing
{
    // Children carry nanoGPT's ModuleDict prefix ("transformer.") in their names.
    public GPT(GptConfig config, Generator initGen, Device? device = null, ulong dropoutSeed = 0)
        : base(config, "GPT", "transformer.", config.Bias, initGen, device, dropoutSeed, (dropoutGen, dev) =>
            new Block(config.NEmbd, config.NHead, config.Bias, config.Dropout, ResidualProjStd(config.NLayer), initGen, dropoutGen, dev))
    {
    }

    /// <summary>Checkpoint each block in training (<see cref="IActivationCheckpointing"/>); dropout masks are redrawn the same.</summary>
    public bool CheckpointActivations { get => CheckpointBlocks; set => CheckpointBlocks = value; }

    /// <summary>"gpt": the name `mt train gpt` and the checkpoints know it by.</summary>
    public override string Architecture => "gpt";

    /// <summary>
    /// idx (B, T) token ids, T &lt;= block size. With targets (B, T): logits (B, T, V) and the mean
    /// cross-entropy (targets of -1 ignored, as nanoGPT). Without: logits of the last position only,
    /// (B, 1, V), which is all generation needs. With <paramref name="cache"/> the tokens continue the
    /// cached ones (positions cache.Length, cache.Length + 1, ...) and are appended to it.
    /// </summary>
    public GptOutput Forward(Tensor idx, Tensor? targets = null, KvCache? cache = null)
    {
        if (targets is not null && !targets.Shape.AsSpan().SequenceEqual(idx.Shape))
            throw new ArgumentException($"GPT: targets {targets.Describe()} must have the shape of the inputs {idx.Describe()}");
        var logits = Logits(idx, cache, allPositions: targets is not null);
        return new GptOutput(logits, targets is null ? null : Functional.CrossEntropy(logits, targets, ignoreIndex: -1));
    }

    public override Tensor Loss(Tensor idx, Tensor targets) => Forward(idx, targets).Loss!;

    /// <summary>
    /// Continues each sequence of <paramref name="idx"/> (B, T) by <paramref name="maxNewTokens"/> tokens, as
    /// nanoGPT's generate, sampling among the first <paramref name="sampledVocab"/> tokens (0: all); see <see cref="WindowedGeneration"/>.
    /// </summary>
    public List<int>[] Generate(Tensor idx, int maxNewTokens, Sampler sampler, Action<int>? onToken, bool useCache, int sampledVocab) =>
        WindowedGeneration.Generate(this, idx, maxNewTokens, sampler, onToken, useCache, sampledVocab);
}
