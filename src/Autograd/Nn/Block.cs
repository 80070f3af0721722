namespace ManagedTensor.Nn;

/// <summary>A pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x)).</summary>
public sealed class Block : Module
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

    public Tensor Forward(Tensor x, AttentionKvCache.Layer? cache = null) // (B, T, C)
    {
        x += Attn.Forward(Ln1.Forward(x), cache);
        return x + Mlp.Forward(Ln2.Forward(x));
    }
}
