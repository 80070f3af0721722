namespace ManagedTensor;

/// <summary>
/// The combine step of a mixture of experts (Mixtral's "unpermute"): after the router sends each token's k
/// choices to k expert rows (dispatch = <c>x.IndexSelect(0, tokenOfRow)</c>, rows sorted by expert so that
/// each expert runs one matmul over a contiguous block), each token gets back the gated sum of its k rows:
///   y[t] = sum_j gate[t, j] * expertOut[slot[t, j]]          expertOut (S, C), slot and gate (T, k), y (T, C)
/// Backward (a scatter-add, the transpose of that gather):
///   dExpertOut[slot[t, j]] += gate[t, j] * dy[t],   dGate[t, j] = expertOut[slot[t, j]] . dy[t]
/// The CPU kernel fuses the gather, the scale and the sum; the fallback (what a backend without a kernel runs)
/// is IndexSelect + Mul + Sum, differentiated op by op.
/// </summary>
internal static class MoeOps
{
    private static Op? _combine;

    // Declared on first use, not in a static initializer: the first use may come from the front end before the
    // registry exists, and building the registry calls Register, which must see the id already.
    public static Op MoeCombine => _combine ??= OpRegistry.Declare("MoeCombine");

    public static void Register()
    {
        OpRegistry.Define(new OpDef(MoeCombine, "MoeCombine")
        {
            Inputs = ["expert_out", "slot", "gate"],
            Outputs = ["y"],
            Summary = "y[t] = sum_j gate[t,j] * expert_out[slot[t,j]]; expert_out (S, C), slot (T, k) int, gate (T, k)",
            Shapes = CombineShapes,
            Backward = CombineBackward,
            Fallback = (inputs, _) =>
            {
                Tensor rows = inputs[0], slot = inputs[1], gate = inputs[2];
                int t = slot.Shape[0], k = slot.Shape[1], c = rows.Shape[1];
                var picked = rows.IndexSelect(0, slot.Reshape(t * k)).Reshape(t, k, c);    // (T, k, C)
                return [(picked * gate.To(rows.DType).Unsqueeze(2)).Sum(1)];                  // (T, C)
            },
        });
        Cpu.CpuBackend.Instance.Kernels.Add(MoeCombine, (i, o, a) => Cpu.CpuMoe.Combine(i[0], i[1], i[2], o[0]),
            (i, a) => i[0].DType is DType.F32 or DType.F64 && i[2].DType == i[0].DType);
    }

    private static TensorSpec[] CombineShapes(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor rows = inputs[0], slot = inputs[1], gate = inputs[2];
        if (!rows.DType.IsFloat()) throw new ArgumentException($"MoeCombine: expert_out {rows.Describe()} must be floating point");
        if (rows.Rank != 2) throw new ArgumentException($"MoeCombine: expert_out {rows.Describe()} must be 2-D (rows, C)");
        if (slot.DType is not (DType.I32 or DType.I64)) throw new ArgumentException($"MoeCombine: slot {slot.Describe()} must be I32 or I64");
        if (slot.Rank != 2) throw new ArgumentException($"MoeCombine: slot {slot.Describe()} must be 2-D (tokens, k)");
        if (!gate.DType.IsFloat() || !gate.Shape.AsSpan().SequenceEqual(slot.Shape))
            throw new ArgumentException($"MoeCombine: gate {gate.Describe()} must be floating point with the shape of slot {slot.Describe()}");
        return [new([slot.Shape[0], rows.Shape[1]], rows.DType)];
    }

    private static Tensor?[] CombineBackward(OpNode node, Tensor y, Tensor g)
    {
        Tensor rows = node.Inputs[0], slot = node.Inputs[1], gate = node.Inputs[2];
        int t = slot.Shape[0], k = slot.Shape[1], c = rows.Shape[1];
        var flat = slot.Reshape(t * k);
        var gRep = g.Unsqueeze(1).Expand(t, k, c);                                          // (T, k, C): dy[t] for each choice
        var dRows = rows.ZerosLike().IndexAdd_(0, flat, (gRep * gate.To(g.DType).Unsqueeze(2)).Reshape(t * k, c));  // (S, C)
        var dGate = (rows.IndexSelect(0, flat).Reshape(t, k, c) * gRep).Sum(2);            // (T, k)
        return [dRows, null, dGate.To(gate.DType)];
    }
}

public sealed partial class Tensor
{
    /// <summary>
    /// Mixture-of-experts combine with this tensor as the experts' output rows (S, C): y[t] = sum_j gate[t, j] *
    /// this[slot[t, j]] (T, C). Differentiable in the rows and the gates.
    /// </summary>
    public Tensor MoeCombine(Tensor slot, Tensor gate) => Apply(MoeOps.MoeCombine, null, this, slot, gate)[0];
}
