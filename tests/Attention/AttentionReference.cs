namespace ManagedTensor.Tests.Attention;

/// <summary>
/// Attention as the plain composition of existing ops: scores = scale q k^T (k repeated over the query
/// heads of its group), a -inf mask on the keys a causal query must not see (aligned bottom right),
/// softmax, the dropout multipliers, then the weighted sum of v. Autograd differentiates it through
/// matmul and softmax, so its gradients are an independent check of the fused backward.
/// </summary>
internal static class AttentionReference
{
    public static Tensor Forward(Tensor q, Tensor k, Tensor v, bool causal, double scale, Tensor? keep = null)
    {
        int b = q.Shape[0], h = q.Shape[1], t = q.Shape[2], d = q.Shape[3], hkv = k.Shape[1], s = k.Shape[2];
        var kx = RepeatHeads(k, h / hkv);                    // (B, H, S, D)
        var vx = RepeatHeads(v, h / hkv);                    // (B, H, S, D)
        var scores = q.MatMul(kx.MT).MulScalar(scale);       // (B, H, T, S)
        if (causal) scores = scores + CausalMask(t, s, q.DType);
        var p = scores.Softmax(-1);
        if (keep is not null) p = p * keep;
        return p.MatMul(vx);                                 // (B, H, T, D)
    }

    /// <summary>log sum_j exp(scores), float64, for the lse the fused op saves.</summary>
    public static double[] Lse(Tensor q, Tensor k, bool causal, double scale)
    {
        using var noGrad = GradMode.NoGrad();
        int h = q.Shape[1], t = q.Shape[2], hkv = k.Shape[1], s = k.Shape[2];
        var scores = q.To(DType.F64).MatMul(RepeatHeads(k.To(DType.F64), h / hkv).MT).MulScalar(scale);
        if (causal) scores = scores + CausalMask(t, s, DType.F64);
        var max = scores.Max(-1, keepDim: true);
        return ((scores - max).Exp().Sum(-1, keepDim: true).Log() + max).ToDoubleArray();
    }

    /// <summary>(B, Hkv, S, D) -> (B, Hkv * g, S, D), each kv head repeated for the g query heads of its group.</summary>
    public static Tensor RepeatHeads(Tensor x, int g)
    {
        int b = x.Shape[0], hkv = x.Shape[1], s = x.Shape[2], d = x.Shape[3];
        return x.Unsqueeze(2).Expand(b, hkv, g, s, d).Reshape(b, hkv * g, s, d);
    }

    /// <summary>(T, S): 0 where query i sees key j (j &lt;= i + S - T), -inf elsewhere.</summary>
    public static Tensor CausalMask(int t, int s, DType dtype)
    {
        var m = new double[t * s];
        for (int i = 0; i < t; i++)
            for (int j = 0; j < s; j++)
                m[i * s + j] = j <= i + s - t ? 0 : double.NegativeInfinity;
        return Tensor.FromArray(m, [t, s]).To(dtype);
    }

    /// <summary>
    /// The dropout multipliers (B, H, T, S) straight from the documented rule: keep entry (b, h, i, j)
    /// when Philox.Uniform(seed, offset + ((b H + h) T + i) S + j) >= p, scaled by 1 / (1 - p).
    /// </summary>
    public static Tensor KeepMask(int b, int h, int t, int s, double p, ulong seed, ulong offset, DType dtype)
    {
        var m = new double[b * h * t * s];
        for (int i = 0; i < m.Length; i++)
            m[i] = Philox.Uniform(seed, offset + (ulong)i) >= p ? 1 / (1 - p) : 0;
        return Tensor.FromArray(m, [b, h, t, s]).To(dtype);
    }
}
