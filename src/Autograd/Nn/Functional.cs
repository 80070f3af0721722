namespace ManagedTensor.Nn;

/// <summary>Stateless pieces shared by modules (torch.nn.functional).</summary>
public static class Functional
{
    /// <summary>x * mask / (1 - p) with mask ~ Bernoulli(1 - p), drawn as U[0,1) >= p.</summary>
    public static Tensor Dropout(Tensor x, double p, Generator gen)
    {
        if (p == 0) return x;
        Tensor keep;
        using (GradMode.NoGrad())
            keep = Tensor.Rand(x.Shape, gen, dtype: x.DType, device: x.Device).Ge(p).To(x.DType).MulScalar(1 / (1 - p));
        return x * keep;
    }

    /// <summary>
    /// Scaled dot-product attention softmax(q k^T * scale + mask) v over (B, H, T, D) queries and
    /// (B, H, S, D) keys and values; scale defaults to 1/sqrt(D). The causal mask lets query i see keys
    /// j &lt;= i + S - T (aligned to the bottom right, so one new query against a cache sees everything).
    /// Plain composition of ops: it materializes the (T, S) scores, as nanoGPT's non-flash path does.
    /// </summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, bool causal, double dropoutP = 0, Generator? gen = null, double? scale = null)
    {
        int t = q.Shape[^2], s = k.Shape[^2];
        var att = q.MatMul(k.MT).MulScalar(scale ?? 1 / Math.Sqrt(q.Shape[^1]));   // (B, H, T, S)
        if (causal) att += CausalMask(t, s, att.DType, att.Device);
        att = att.Softmax(-1);
        if (dropoutP > 0) att = Dropout(att, dropoutP, gen ?? throw new ArgumentNullException(nameof(gen), "attention dropout needs a generator"));
        return att.MatMul(v);                                                       // (B, H, T, D)
    }

    private static readonly Dictionary<(int, int, DType, Device), Tensor> Masks = [];

    /// <summary>(T, S) additive mask: 0 where query i may see key j (j &lt;= i + S - T), -inf elsewhere. Cached.</summary>
    public static Tensor CausalMask(int t, int s, DType dtype, Device device)
    {
        lock (Masks)
        {
            if (Masks.TryGetValue((t, s, dtype, device), out var m)) return m;
            var values = new double[t * s];
            for (int i = 0; i < t; i++)
                for (int j = 0; j < s; j++)
                    values[i * s + j] = j <= i + s - t ? 0 : double.NegativeInfinity;
            m = Tensor.FromArray(values, [t, s]).To(dtype).To(device);
            Masks[(t, s, dtype, device)] = m;
            return m;
        }
    }

    /// <summary>Mean cross-entropy of logits (..., C) against integer targets (...); targets equal to ignoreIndex do not count.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100)
        => Tensor.CrossEntropy(logits.Reshape(-1, logits.Shape[^1]), targets.Reshape(-1), ignoreIndex);
}
