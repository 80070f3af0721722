namespace ManagedTensor;

/// <summary>
/// Attention straight from a packed projection: qkv (B, T, 3C) = [q | k | v] along the last axis, each third
/// holding H heads of D = C / H side by side (what one C -> 3C Linear gives, nanoGPT's c_attn), to
/// y (B, T, C) with the heads side by side again (what the output projection reads), and lse (B, H, T) for
/// the backward. It is <see cref="Tensor.Attention"/> on q, k, v = qkv's thirds viewed as (B, H, T, D), with
/// the output transposed back to (B, T, H, D):
///   y[b, t, h D + i] = softmax_j(scale q_{b,h,t} . k_{b,h,j} + mask) v_{b,h,j,i}
/// Fused so that a kernel reads q, k, v where the projection wrote them and writes y where the next matmul
/// reads it: the (B, H, T, D) form costs a transposing copy of q, k, v and y in the forward and of dy,
/// dq, dk, dv in the backward, plus assembling dq, dk, dv into one gradient of qkv. The backward op gives
/// that gradient, dqkv (B, T, 3C), in one piece. Both ops fall back to the (B, H, T, D) composite on a
/// backend without a kernel (the GPU until it has one), which autograd differentiates op by op.
/// </summary>
internal static class QkvAttentionOps
{
    private static Op _forward, _backward; // set by Register (see OpRegistry.Id for why not by static initializers)

    public static Op QkvAttention => OpRegistry.Id(ref _forward);

    public static Op QkvAttentionBackward => OpRegistry.Id(ref _backward);

    public static void Register()
    {
        _forward = OpRegistry.Declare("QkvAttention");
        _backward = OpRegistry.Declare("QkvAttentionBackward");
        OpRegistry.Define(new OpDef(_forward, "QkvAttention")
        {
            Inputs = ["qkv"],
            Outputs = ["y", "lse"],
            Attrs = typeof(QkvAttentionAttrs),
            Summary = "y (B, T, C) = attention of the heads of qkv (B, T, 3C) = [q | k | v]; lse (B, H, T)",
            Shapes = (inputs, attrs) =>
            {
                var (b, t, c, heads) = CheckQkv(inputs[0], attrs, "QkvAttention");
                return [new([b, t, c], inputs[0].DType), new([b, heads, t], Tensor.LseDType(inputs[0].DType))];
            },
            Backward = (node, y, g) => [Tensor.QkvAttentionBackward(g, node.Inputs[0], y, node.Saved[0], (QkvAttentionAttrs)node.Attrs!)],
            Fallback = Composite,
        });
        OpRegistry.Define(new OpDef(_backward, "QkvAttentionBackward")
        {
            Inputs = ["dy", "qkv", "y", "lse"],
            Outputs = ["dqkv"],
            Attrs = typeof(QkvAttentionAttrs),
            Summary = "dqkv (B, T, 3C) of QkvAttention from dy (B, T, C), qkv, y and lse",
            Shapes = (inputs, attrs) =>
            {
                var (b, t, c, heads) = CheckQkv(inputs[1], attrs, "QkvAttentionBackward");
                Tensor.CheckShape(inputs[0], [b, t, c], "QkvAttentionBackward", "dy");
                Tensor.CheckShape(inputs[2], [b, t, c], "QkvAttentionBackward", "y");
                Tensor.CheckShape(inputs[3], [b, heads, t], "QkvAttentionBackward", "lse");
                return [new(inputs[1].Shape, inputs[1].DType)];
            },
            Fallback = BackwardComposite,
        });
        var cpu = Cpu.CpuBackend.Instance.Kernels;
        cpu.Add(_forward, (i, o, a) => Cpu.CpuAttention.QkvForward(i[0], o[0], o[1], (QkvAttentionAttrs)a!), F32OrF64);
        cpu.Add(_backward, (i, o, a) => Cpu.CpuAttention.QkvBackward(i[0], i[1], i[2], i[3], o[0], (QkvAttentionAttrs)a!), F32OrF64);
    }

    private static bool F32OrF64(ReadOnlySpan<Tensor> inputs, OpAttrs? attrs) => inputs[0].DType is DType.F32 or DType.F64;

    /// <summary>Validates qkv (B, T, 3 H D) against the attributes; returns B, T, C = H D and H.</summary>
    private static (int B, int T, int C, int Heads) CheckQkv(Tensor qkv, OpAttrs? attrs, string op)
    {
        if (attrs is not QkvAttentionAttrs a) throw new ArgumentException($"{op} takes QkvAttentionAttrs(heads, attention)");
        qkv.CheckFloat(op);
        if (qkv.Rank != 3 || qkv.Shape[2] % 3 != 0)
            throw new ArgumentException($"{op}: qkv {qkv.Describe()} must be (B, T, 3C): q, k and v side by side along the last axis");
        int c = qkv.Shape[2] / 3;
        if (a.Heads <= 0 || c % a.Heads != 0)
            throw new ArgumentException($"{op}: {a.Heads} heads do not divide the {c} channels of each third of qkv {qkv.Describe()}");
        return (qkv.Shape[0], qkv.Shape[1], c, a.Heads);
    }

    /// <summary>qkv's third <paramref name="part"/> (0 q, 1 k, 2 v) as (B, H, T, D) views.</summary>
    private static Tensor Heads(Tensor qkv, int part, int heads)
    {
        int b = qkv.Shape[0], t = qkv.Shape[1], c = qkv.Shape[2] / 3;
        return qkv.Narrow(2, part * c, c).Reshape(b, t, heads, c / heads).Transpose(1, 2);
    }

    /// <summary>(B, H, T, D) -> (B, T, H D): the heads side by side again.</summary>
    private static Tensor Merge(Tensor heads)
    {
        int b = heads.Shape[0], h = heads.Shape[1], t = heads.Shape[2], d = heads.Shape[3];
        return heads.Transpose(1, 2).Contiguous().Reshape(b, t, h * d);
    }

    private static Tensor[] Composite(Tensor[] inputs, OpAttrs? attrs)
    {
        var a = (QkvAttentionAttrs)attrs!;
        var qkv = inputs[0];
        var (y, lse) = Tensor.AttentionWithAttrs(Heads(qkv, 0, a.Heads), Heads(qkv, 1, a.Heads), Heads(qkv, 2, a.Heads), a.Attention);
        return [Merge(y), lse];
    }

    private static Tensor[] BackwardComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        var a = (QkvAttentionAttrs)attrs!;
        Tensor dy = inputs[0], qkv = inputs[1], y = inputs[2], lse = inputs[3];
        int b = qkv.Shape[0], t = qkv.Shape[1], c = qkv.Shape[2] / 3, d = c / a.Heads;
        Tensor Split(Tensor x) => x.Reshape(b, t, a.Heads, d).Transpose(1, 2); // (B, T, C) -> (B, H, T, D)
        var (dq, dk, dv) = Tensor.AttentionBackward(Split(dy), Heads(qkv, 0, a.Heads), Heads(qkv, 1, a.Heads), Heads(qkv, 2, a.Heads), Split(y), lse, a.Attention);
        return [Tensor.Cat([Merge(dq), Merge(dk), Merge(dv)], 2)];
    }
}

/// <summary>The attributes of <see cref="QkvAttentionOps.QkvAttention"/>: how many heads each third of qkv holds, and the attention's own.</summary>
public sealed record QkvAttentionAttrs(int Heads, AttentionAttrs Attention) : OpAttrs;

public sealed partial class Tensor
{
    /// <summary>
    /// Attention from a packed projection qkv (B, T, 3C) = [q | k | v], each third holding
    /// <paramref name="heads"/> heads side by side, to (B, T, C) with the heads side by side: the same as
    /// splitting qkv into q, k, v (B, H, T, D), calling <see cref="Attention"/> and transposing its output
    /// back, without any of the copies (see <see cref="QkvAttentionOps"/>). Causal masking, scale (default
    /// 1 / sqrt(D)) and dropout on the attention weights (drawn from <paramref name="gen"/>) as <see cref="Attention"/>.
    /// </summary>
    public static Tensor QkvAttention(Tensor qkv, int heads, bool causal, double? scale = null, double dropoutP = 0, Generator? gen = null)
    {
        if (qkv.Rank != 3 || qkv.Shape[2] % 3 != 0 || heads <= 0 || qkv.Shape[2] / 3 % heads != 0)
            throw new ArgumentException($"QkvAttention: qkv {qkv.Describe()} must be (B, T, 3C) with C a multiple of the {heads} heads");
        if (Autocast.Target(qkv.DType) is { } low) // 16-bit input and output (Autocast.cs)
            return InSixteenBits(low, [qkv], x => QkvAttention(x[0], heads, causal, scale, dropoutP, gen));
        int b = qkv.Shape[0], t = qkv.Shape[1], d = qkv.Shape[2] / 3 / heads;
        var attrs = new QkvAttentionAttrs(heads, AttentionAttrsFor(b, heads, t, t, d, causal, scale, dropoutP, gen));
        return Apply(QkvAttentionOps.QkvAttention, attrs, qkv)[0];
    }

    /// <summary>dqkv (B, T, 3C) of <see cref="QkvAttention"/> from dy (B, T, C), its input, its output and the saved lse.</summary>
    public static Tensor QkvAttentionBackward(Tensor dy, Tensor qkv, Tensor y, Tensor lse, QkvAttentionAttrs attrs)
        => Apply(QkvAttentionOps.QkvAttentionBackward, attrs, dy, qkv, y, lse)[0];
}
