namespace ManagedTensor;

/// <summary>
/// Fused scaled dot-product attention (flash-attention style): softmax(scale q k^T + mask) v without
/// a T x S score matrix in memory. The forward keeps only each row's log-sum-exp; the backward
/// recomputes the scores tile by tile from it, so the extra memory grows linearly with T.
/// </summary>
public sealed partial class Tensor
{
    /// <summary>
    /// Attention over q (B, H, T, D), k and v (B, Hkv, S, D) -> (B, H, T, D), as PyTorch's
    /// <c>scaled_dot_product_attention(q, k, v, is_causal, dropout_p, scale, enable_gqa=True)</c>.
    /// H must be a multiple of Hkv (grouped-query attention: query head h reads kv head h / (H / Hkv)).
    /// <paramref name="causal"/>: query i sees keys j &lt;= i + S - T (the mask is aligned to the bottom
    /// right, so one new token against a cache of S keys sees all of them). <paramref name="scale"/>
    /// defaults to 1 / sqrt(D). Dropout on the attention weights draws from <paramref name="gen"/>
    /// (B H T S counters), the same mask on every backend.
    /// </summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, bool causal, double? scale = null, double dropoutP = 0, Generator? gen = null)
    {
        CheckAttentionShapes(q, k, v);
        if (Autocast.Target(q.DType, k.DType, v.DType) is { } low) // 16-bit inputs and output (Autocast.cs)
            return InSixteenBits(low, [q, k, v], x => Attention(x[0], x[1], x[2], causal, scale, dropoutP, gen));
        var attrs = AttentionAttrsFor(q.Shape[0], q.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], causal, scale, dropoutP, gen);
        return AttentionWithAttrs(q, k, v, attrs).Output;
    }

    /// <summary>
    /// The attributes of one attention call over (B, H, T, D) queries and S keys: the scale (default
    /// 1 / sqrt(D)) and, with dropout, the B H T S counters reserved from <paramref name="gen"/> for its mask.
    /// </summary>
    internal static AttentionAttrs AttentionAttrsFor(int b, int h, int t, int s, int d, bool causal, double? scale, double dropoutP, Generator? gen)
    {
        if (!(dropoutP >= 0 && dropoutP < 1))
            throw new ArgumentOutOfRangeException(nameof(dropoutP), dropoutP, "Attention: dropout probability must be in [0, 1)");
        if (dropoutP > 0 && gen is null)
            throw new ArgumentException("Attention: dropout needs a Generator (gen) to draw its mask from", nameof(gen));
        double sc = scale ?? 1.0 / Math.Sqrt(Math.Max(d, 1));
        ulong seed = 0, offset = 0;
        if (dropoutP > 0)
        {
            seed = gen!.Seed;
            offset = gen.Take((long)b * h * t * s);
        }
        return new AttentionAttrs(causal, sc, dropoutP, seed, offset);
    }

    /// <summary><see cref="Attention"/> with its attributes drawn already; also returns the row log-sum-exp (B, H, T).</summary>
    internal static (Tensor Output, Tensor Lse) AttentionWithAttrs(Tensor q, Tensor k, Tensor v, AttentionAttrs attrs)
    {
        CheckAttentionShapes(q, k, v);
        int b = q.Shape[0], h = q.Shape[1], t = q.Shape[2], s = k.Shape[2];
        var output = Empty(q.Shape, q.DType, q.Device);
        var lse = Empty([b, h, t], LseDType(q.DType), q.Device);
        if (output.Numel > 0)
        {
            if (s == 0) // no keys: every row is empty (out 0, lse +inf), as a fully masked row
            {
                output.Fill_(0);
                lse.Fill_(double.PositiveInfinity);
            }
            else
            {
                var (kIn, vIn) = KvOperands(k, v);
                q.Backend.Execute(Op.Attention, [q.Dense(), kIn, vIn], [output, lse], attrs);
            }
        }
        return (Record(output, Op.Attention, attrs, [q, k, v], lse), lse);
    }

    /// <summary>
    /// K and V as the kernels take them: as they are when their last axis is contiguous and both have the
    /// same strides (a KV cache's (B, Hkv, capacity, D) buffers narrowed to the S filled positions), so a
    /// decode step reads the cache in place instead of copying all of it in every layer; else dense copies.
    /// </summary>
    private static (Tensor K, Tensor V) KvOperands(Tensor k, Tensor v)
    {
        bool inPlace = k.Strides[3] == 1 && v.Strides[3] == 1 && k.Strides.AsSpan().SequenceEqual(v.Strides)
                       && k.Strides.AsSpan().IndexOfAnyInRange(int.MinValue, -1) < 0;
        return inPlace ? (k, v) : (k.Dense(), v.Dense());
    }

    /// <summary>dq, dk, dv of <see cref="Attention"/> from dout, the inputs, the output and its row log-sum-exp.</summary>
    public static (Tensor Dq, Tensor Dk, Tensor Dv) AttentionBackward(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse, AttentionAttrs attrs)
    {
        CheckAttentionShapes(q, k, v);
        CheckShape(dout, q.Shape, "AttentionBackward", "dout");
        CheckShape(output, q.Shape, "AttentionBackward", "out");
        CheckShape(lse, q.Shape[..3], "AttentionBackward", "lse");
        var dq = q.EmptyLike();
        var dk = k.EmptyLike();
        var dv = v.EmptyLike();
        if (q.Numel == 0 || k.Numel == 0)
        {
            dq.Fill_(0);
            dk.Fill_(0);
            dv.Fill_(0);
        }
        else q.Backend.Execute(Op.AttentionBackward, [dout.Dense(), q.Dense(), k.Dense(), v.Dense(), output.Dense(), lse.Dense()], [dq, dk, dv], attrs);
        return (dq, dk, dv);
    }

    /// <summary>The row log-sum-exp is kept in float32 (float64 for float64 inputs: gradient checks need it).</summary>
    public static DType LseDType(DType input) => input == DType.F64 ? DType.F64 : DType.F32;

    private static void CheckAttentionShapes(Tensor q, Tensor k, Tensor v)
    {
        q.CheckFloat("Attention");
        q.CheckSameDeviceAndType(k, Op.Attention);
        q.CheckSameDeviceAndType(v, Op.Attention);
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"Attention: q {q.Describe()}, k {k.Describe()} and v {v.Describe()} must be 4-D: q (B, H, T, D), k and v (B, Hkv, S, D)");
        if (!k.Shape.AsSpan().SequenceEqual(v.Shape))
            throw new ArgumentException($"Attention: k {k.Describe()} and v {v.Describe()} must have the same shape (B, Hkv, S, D)");
        if (k.Shape[0] != q.Shape[0] || k.Shape[3] != q.Shape[3])
            throw new ArgumentException($"Attention: k {k.Describe()} must match q {q.Describe()} in batch (axis 0) and head dim (axis 3)");
        if (k.Shape[1] == 0 ? q.Shape[1] != 0 : q.Shape[1] % k.Shape[1] != 0)
            throw new ArgumentException($"Attention: the {q.Shape[1]} query heads of q {q.Describe()} must be a multiple of the {k.Shape[1]} kv heads of k {k.Describe()}");
    }

    /// <summary>
    /// An attention op under autocast: <paramref name="inputs"/> cast to <paramref name="low"/>, and run in it where the
    /// backend has an attention kernel for it (the GPU backend's read F16 and BF16; QkvAttention falls back to that
    /// kernel where it has none of its own); else (the CPU backend's kernels read float32 only) widened to float32 and
    /// the output cast back to <paramref name="low"/>, so the result is 16-bit either way and accumulated in float32,
    /// as flash attention does. <paramref name="run"/> runs with autocast off.
    /// </summary>
    internal static Tensor InSixteenBits(DType low, Tensor[] inputs, Func<Tensor[], Tensor> run)
    {
        using var off = Autocast.Enable(null);
        var sixteen = inputs.Select(x => x.To(low)).ToArray();
        if (sixteen[0].Backend.Kernels.Has(Op.Attention, sixteen, null)) return run(sixteen);
        return run(sixteen.Select(x => x.To(DType.F32)).ToArray()).To(low);
    }
}
