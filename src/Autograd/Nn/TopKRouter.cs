namespace ManagedTensor.Nn;

/// <summary>How a router turns its logits into scores: softmax over experts (Switch, Mixtral) or an independent sigmoid per expert (DeepSeek-V3).</summary>
public enum Gating { Softmax, Sigmoid }

/// <summary>
/// Where each token goes, as a dropless dispatch: the T*k (token, choice) pairs sorted by expert, so expert e
/// owns rows [RowStart[e], RowStart[e + 1]) of the dispatched tensor <c>x.IndexSelect(0, TokenOfRow)</c>.
/// </summary>
/// <param name="Gate">(T, k) weights of the chosen experts, differentiable (the router learns through them).</param>
/// <param name="Expert">(T, k) I64: the chosen experts, best first.</param>
/// <param name="Slot">(T, k) I32: the row of the dispatched tensor that holds choice j of token t.</param>
/// <param name="TokenOfRow">(T*k) I32: the token each dispatched row came from.</param>
/// <param name="RowStart">E + 1 offsets: rows per expert are RowStart[e + 1] - RowStart[e].</param>
/// <param name="AuxLoss">Scalar load-balancing loss (see <see cref="TopKRouter"/>), differentiable in the router.</param>
public sealed record Routing(Tensor Gate, Tensor Expert, Tensor Slot, Tensor TokenOfRow, int[] RowStart, Tensor AuxLoss);

/// <summary>
/// A top-k router: logits = x W_r^T (T, E); scores = softmax or sigmoid of the logits; each token picks its k
/// highest-scoring experts (ties to the lower index) and weighs them by their scores renormalized over the k
/// chosen (Mixtral; with k = 1 and softmax the gate is 1, so Switch's un-renormalized gate is the option
/// <c>renormalize: false</c>). The choice is discrete (no gradient); the gates carry the router's gradient.
///
/// Load-balancing loss (Switch eq. 4, in the form of Hugging Face's Mixtral load_balancing_loss_func):
///   aux = E * sum_e f_e P_e,  f_e = (tokens routed to e over all k choices) / T,  P_e = mean_t p[t, e]
/// with p the scores normalized over experts. f is counted, not differentiated; P carries the gradient that
/// pushes probability away from overloaded experts. Balanced routing gives aux = k, collapse onto one expert E*k.
/// </summary>
public sealed class TopKRouter : Module
{
    public TopKRouter(int dim, int experts, int topK, Gating gating, Generator gen, Device device, bool renormalize = true)
    {
        if (experts < 1) throw new UserErrorException($"MoE router: the number of experts must be at least 1, got {experts}");
        if (topK < 1 || topK > experts)
            throw new UserErrorException($"MoE router: top-k = {topK} must be between 1 and the number of experts ({experts})");
        Experts = experts;
        TopK = topK;
        Gating = gating;
        Renormalize = renormalize;
        Proj = Child("proj", new Linear(dim, experts, bias: false, gen, device, initStd: 0.02));
    }

    public int Experts { get; }
    public int TopK { get; }
    public Gating Gating { get; }
    public bool Renormalize { get; }
    public Linear Proj { get; }

    public Routing Route(Tensor x) // x (T, C)
    {
        if (x.Rank != 2) throw new ArgumentException($"MoE router: input {x.Describe()} must be 2-D (tokens, C)");
        return FromLogits(Proj.Forward(x), TopK, Gating, Renormalize);  // logits (T, E)
    }

    /// <summary>The routing of <paramref name="logits"/> (T, E): the module's work without its projection (tests run it in float64).</summary>
    public static Routing FromLogits(Tensor logits, int topK, Gating gating, bool renormalize = true)
    {
        if (logits.Rank != 2) throw new ArgumentException($"MoE router: logits {logits.Describe()} must be 2-D (tokens, experts)");
        int tokens = logits.Shape[0], k = topK, e = logits.Shape[1];
        if (k < 1 || k > e) throw new UserErrorException($"MoE router: top-k = {k} must be between 1 and the number of experts ({e})");
        var scores = gating == Gating.Softmax ? logits.Softmax(-1) : logits.Sigmoid();  // (T, E)

        // The discrete choice, on the host: k best experts per token, then rows grouped by expert.
        var host = scores.Detach().To(Device.Cpu).To(DType.F64).ToArray<double>();
        var expert = new long[tokens * k];
        var count = new int[e];
        var order = new int[e];
        for (int t = 0; t < tokens; t++)
        {
            for (int i = 0; i < e; i++) order[i] = i;
            int rowAt = t * e;
            // Stable sort by descending score: ties keep the lower expert first.
            var sorted = order.OrderByDescending(i => host[rowAt + i]).Take(k).ToArray();
            for (int j = 0; j < k; j++) { expert[t * k + j] = sorted[j]; count[sorted[j]]++; }
        }
        var rowStart = new int[e + 1];
        for (int i = 0; i < e; i++) rowStart[i + 1] = rowStart[i] + count[i];
        var next = rowStart[..e];
        var slot = new int[tokens * k];
        var tokenOfRow = new int[tokens * k];
        for (int t = 0; t < tokens; t++)  // token-major, so each expert's rows keep the tokens in order
            for (int j = 0; j < k; j++)
            {
                int r = next[expert[t * k + j]]++;
                slot[t * k + j] = r;
                tokenOfRow[r] = t;
            }

        var expertT = Tensor.FromArray(expert, [tokens, k], logits.Device);
        var gate = scores.Gather(1, expertT);                                           // (T, k)
        if (renormalize) gate /= gate.Sum(1, keepDim: true);

        var probs = gating == Gating.Softmax ? scores : scores / scores.Sum(1, keepDim: true);
        var routedPerExpert = Tensor.FromArray(count.Select(c => (float)c).ToArray(), [e], logits.Device).To(probs.DType);
        var aux = (probs.Mean(0) * routedPerExpert).Sum().MulScalar((double)e / Math.Max(tokens, 1));
        return new Routing(gate, expertT, Tensor.FromArray(slot, [tokens, k], logits.Device),
            Tensor.FromArray(tokenOfRow, [tokens * k], logits.Device), rowStart, aux);
    }
}
