namespace ManagedTensor.Nn;

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
    public Tensor Forward(Tensor x, AttentionKvCache.Layer? cache = null)
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
