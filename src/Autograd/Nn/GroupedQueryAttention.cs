namespace ManagedTensor.Nn;

/// <summary>
/// Causal self-attention with grouped-query heads (Ainslie et al. 2023) and rotary positions, as Llama,
/// Mistral and Qwen compute it: H query heads share Hkv key/value heads (query head h reads kv head
/// h / (H / Hkv); Hkv = H is plain multi-head attention, Hkv = 1 multi-query). Per token x (C):
///   q = RoPE(Wq x) (H heads), k = RoPE(Wk x), v = Wv x (Hkv heads), y = Wo attention(q, k, v).
/// The attention is one fused op (<see cref="Tensor.Attention"/>), which takes the grouped heads as
/// they are (no repeat of k and v). With a <see cref="KvCache"/> layer the T new tokens sit at positions
/// after the cached ones: their keys and values are appended, and each query attends to everything
/// before it, read in place from the cache. Children are named as Hugging Face names them (q_proj, ...).
/// </summary>
public sealed class GroupedQueryAttention : Module
{
    public GroupedQueryAttention(Linear q, Linear k, Linear v, Linear o, int heads, int kvHeads, RotaryEmbedding? rope)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw new ArgumentException($"GQA: {heads} query heads must be a positive multiple of {kvHeads} kv heads");
        if (q.OutFeatures % heads != 0) throw new ArgumentException($"GQA: q_proj's {q.OutFeatures} outputs do not split into {heads} heads");
        HeadSize = q.OutFeatures / heads;
        if (k.OutFeatures != kvHeads * HeadSize || v.OutFeatures != kvHeads * HeadSize)
            throw new ArgumentException($"GQA: k_proj ({k.OutFeatures}) and v_proj ({v.OutFeatures}) must give {kvHeads} heads of {HeadSize}");
        if (o.InFeatures != q.OutFeatures) throw new ArgumentException($"GQA: o_proj takes {o.InFeatures} features, the heads give {q.OutFeatures}");
        if (rope is not null && rope.HeadSize != HeadSize) throw new ArgumentException($"GQA: RoPE of head size {rope.HeadSize} for heads of {HeadSize}");
        Heads = heads;
        KvHeads = kvHeads;
        Rope = rope;
        Q = Child("q_proj", q);
        K = Child("k_proj", k);
        V = Child("v_proj", v);
        O = Child("o_proj", o);
    }

    public int Heads { get; }
    public int KvHeads { get; }
    public int HeadSize { get; }
    public RotaryEmbedding? Rope { get; }
    public Linear Q { get; }
    public Linear K { get; }
    public Linear V { get; }
    public Linear O { get; }

    /// <summary>(B, T, C) -> (B, T, C); with <paramref name="cache"/> the tokens continue the cached positions.</summary>
    public Tensor Forward(Tensor x, KvCache.Layer? cache = null)
    {
        if (x.Rank != 3) throw new ArgumentException($"GQA: input {x.Describe()} must be (B, T, C)");
        int b = x.Shape[0], t = x.Shape[1], start = cache?.Length ?? 0;
        var q = Split(Q.Forward(x), Heads);                                     // (B, H, T, hs)
        var k = Split(K.Forward(x), KvHeads);                                   // (B, Hkv, T, hs)
        var v = Split(V.Forward(x), KvHeads);
        if (Rope is not null)
        {
            q = Rope.Apply(q, start);
            k = Rope.Apply(k, start);
        }
        if (cache is not null) (k, v) = cache.Append(k, v);                    // (B, Hkv, start + T, hs)
        var y = Tensor.Attention(q, k, v, causal: true);                        // (B, H, T, hs); causal aligned to the last key
        return O.Forward(y.Transpose(1, 2).Contiguous().Reshape(b, t, Heads * HeadSize));
    }

    /// <summary>(B, T, n hs) -> (B, n, T, hs).</summary>
    private Tensor Split(Tensor x, int n) => x.Reshape(x.Shape[0], x.Shape[1], n, HeadSize).Transpose(1, 2);
}
