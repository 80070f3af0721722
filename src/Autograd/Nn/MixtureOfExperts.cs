namespace ManagedTensor.Nn;

/// <summary>
/// A sparse mixture-of-experts feed-forward layer (Switch Transformer, Mixtral): a <see cref="TopKRouter"/>
/// sends each token to k of E expert MLPs (C -> H, GELU, H -> C) and sums their outputs weighted by the gates.
///
/// The experts run as grouped matmuls: the T*k routed rows are gathered once, sorted by expert
/// (<c>x.IndexSelect(0, TokenOfRow)</c>, whose backward is a scatter-add), and expert e multiplies its
/// contiguous block of rows by its weights in one GEMM; the per-expert outputs are concatenated back and the
/// gated sum returns to token order with <see cref="Tensor.MoeCombine"/>. Dropless: no token is dropped for
/// capacity (as Mixtral and MegaBlocks), so the result is the same whatever the batch.
/// </summary>
public sealed class MixtureOfExperts : Module
{
    public MixtureOfExperts(int dim, int hidden, int experts, int topK, Gating gating, Generator gen, Device device, double projStd = 0.02)
    {
        Dim = dim;
        Hidden = hidden;
        Router = Child("router", new TopKRouter(dim, experts, topK, gating, gen, device));
        Up = Parameter("w_up", Init.Normal([experts, hidden, dim], 0.02, gen, device));       // (E, H, C)
        Down = Parameter("w_down", Init.Normal([experts, dim, hidden], projStd, gen, device)); // (E, C, H)
    }

    public int Dim { get; }
    public int Hidden { get; }
    public TopKRouter Router { get; }
    public Tensor Up { get; }
    public Tensor Down { get; }

    /// <summary>The auxiliary load-balancing loss of the last <see cref="Forward"/> (a scalar tensor in the graph).</summary>
    public Tensor? LastAuxLoss { get; private set; }

    /// <summary>Tokens routed to each expert by the last <see cref="Forward"/> (all k choices counted).</summary>
    public int[] LastLoad { get; private set; } = [];

    public Tensor Forward(Tensor x) // (..., C) -> (..., C)
    {
        if (x.Rank == 0 || x.Shape[^1] != Dim) throw new ArgumentException($"MixtureOfExperts({Dim}): input {x.Describe()} must end in {Dim}");
        var flat = x.Reshape(-1, Dim);                                     // (T, C)
        var (y, r) = Run(flat, Router.Route(flat), Up, Down);
        LastAuxLoss = r.AuxLoss;
        LastLoad = Enumerable.Range(0, Router.Experts).Select(e => r.RowStart[e + 1] - r.RowStart[e]).ToArray();
        return y.Reshape(x.Shape);                                         // (..., C)
    }

    /// <summary>
    /// The experts' work for a routing <paramref name="r"/> of <paramref name="x"/> (T, C), with expert weights
    /// <paramref name="up"/> (E, H, C) and <paramref name="down"/> (E, C, H): gather, one GEMM pair per expert, combine.
    /// </summary>
    public static (Tensor Y, Routing R) Run(Tensor x, Routing r, Tensor up, Tensor down)
    {
        int experts = up.Shape[0], hidden = up.Shape[1], dim = up.Shape[2];
        var rows = x.IndexSelect(0, r.TokenOfRow);                         // (T*k, C), grouped by expert
        var outs = new List<Tensor>(experts);
        for (int e = 0; e < experts; e++)
        {
            int n = r.RowStart[e + 1] - r.RowStart[e];
            if (n == 0) continue;
            var block = rows.Narrow(0, r.RowStart[e], n);                  // (n_e, C)
            var w1 = up.Narrow(0, e, 1).Reshape(hidden, dim);              // (H, C)
            var w2 = down.Narrow(0, e, 1).Reshape(dim, hidden);            // (C, H)
            outs.Add(block.MatMul(w1.MT).Gelu().MatMul(w2.MT));            // (n_e, C): one GEMM pair per expert
        }
        var expertOut = outs.Count == 1 ? outs[0] : Tensor.Cat(outs.ToArray(), 0);  // (T*k, C)
        return (expertOut.MoeCombine(r.Slot, r.Gate), r);                 // (T, C)
    }
}
