namespace ManagedTensor;

/// <summary>
/// Chunk length of a scan (the spacing of the saved states the backward pass restarts from, and the unit of the
/// parallel schedule) and whether the forward runs chunk-parallel (three phases) or as one sequential pass.
/// </summary>
public sealed record SelectiveScanAttrs(int Chunk = 64, bool ChunkParallel = true) : OpAttrs;

/// <summary>
/// Mamba-1's selective scan (Gu and Dao 2023, Algorithm 2), as an op with a kernel on the CPU, a composite
/// fallback elsewhere, and a fused backward op:
///   h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t,     y_t = C_t · h_t + D x_t
/// per batch row and channel d, with a state of N values. Layouts are sequence-major, as the model's linear
/// layers produce them: x, Δ (B, L, D); A (D, N); B, C (B, L, N) (one group shared by all channels); D (D).
/// Δ comes in already positive (the model applies softplus and the bias). Outputs: y (B, L, D) and the states
/// at the start of each chunk (B, ceil(L / Chunk), D, N), which the backward op restarts from.
/// </summary>
public static class ScanOps
{
    public static readonly Op SelectiveScan = OpRegistry.Declare("SelectiveScan");
    public static readonly Op SelectiveScanBackward = OpRegistry.Declare("SelectiveScanBackward");

    internal static void Register()
    {
        // Ids by name, not the static fields: Register runs inside OpRegistry's static constructor, which the first
        // touch of those fields can trigger while they are still unset (Declare returns the same id for a name).
        Op forward = OpRegistry.Declare("SelectiveScan"), backward = OpRegistry.Declare("SelectiveScanBackward");
        OpRegistry.Define(new OpDef(forward, "SelectiveScan")
        {
            Inputs = ["x", "delta", "A", "B", "C", "D"],
            Outputs = ["y", "chunk_states"],
            Attrs = typeof(SelectiveScanAttrs),
            Summary = "Mamba's selective scan: h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t, y_t = C_t h_t + D x_t",
            Shapes = Shapes,
            Backward = (node, y, g) =>
            {
                var i = node.Inputs;
                var grads = Tensor.Apply(backward, node.Attrs, g.Contiguous(), i[0], i[1], i[2], i[3], i[4], i[5], node.Saved[0]);
                return [.. grads];
            },
            Fallback = Composite,
        });
        OpRegistry.Define(new OpDef(backward, "SelectiveScanBackward")
        {
            Inputs = ["dy", "x", "delta", "A", "B", "C", "D", "chunk_states"],
            Outputs = ["dx", "ddelta", "dA", "dB", "dC", "dD"],
            Attrs = typeof(SelectiveScanAttrs),
            Summary = "gradients of SelectiveScan from dy, recomputing each chunk's states from the saved chunk starts",
            Shapes = (inputs, attrs) => [.. inputs[1..7].Select(t => new TensorSpec(t.Shape, t.DType))],
            Fallback = BackwardComposite,
        });
        var cpu = Cpu.CpuBackend.Instance.Kernels;
        KernelGuard f32OrF64 = (i, a) => i[0].DType is DType.F32 or DType.F64;
        cpu.Add(forward, (i, o, a) => Cpu.CpuSelectiveScan.Forward(i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], (SelectiveScanAttrs)a!), f32OrF64);
        cpu.Add(backward, (i, o, a) =>
            Cpu.CpuSelectiveScan.Backward(i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], o[0], o[1], o[2], o[3], o[4], o[5], (SelectiveScanAttrs)a!), f32OrF64);
    }

    private static TensorSpec[] Shapes(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], delta = inputs[1], a = inputs[2], b = inputs[3], c = inputs[4], d = inputs[5];
        if (attrs is not SelectiveScanAttrs sa) throw new ArgumentException("SelectiveScan takes SelectiveScanAttrs(chunk, chunkParallel)");
        if (sa.Chunk < 1) throw new ArgumentException($"SelectiveScan: chunk must be at least 1, got {sa.Chunk}");
        if (x.Rank != 3 || x.Shape[1] < 1) throw new ArgumentException($"SelectiveScan: x {x.Describe()} must be (B, L, D) with L >= 1");
        int bsz = x.Shape[0], l = x.Shape[1], dim = x.Shape[2];
        if (a.Rank != 2 || a.Shape[0] != dim) throw new ArgumentException($"SelectiveScan: A {a.Describe()} must be (D, N) with D = {dim}, the channels of x {x.Describe()}");
        int n = a.Shape[1];
        void Same(Tensor t, string name, params int[] shape)
        {
            if (!t.Shape.AsSpan().SequenceEqual(shape))
                throw new ArgumentException($"SelectiveScan: {name} {t.Describe()} must be {Tensor.ShapeString(shape)} (x {x.Describe()}, A {a.Describe()}: state size N = {n})");
            if (t.DType != x.DType) throw new ArgumentException($"SelectiveScan: {name} {t.Describe()} must have the dtype of x {x.Describe()}");
        }
        if (!x.DType.IsFloat()) throw new ArgumentException($"SelectiveScan: x {x.Describe()} must be floating point");
        Same(delta, "delta", bsz, l, dim);
        Same(a, "A", dim, n);
        Same(b, "B", bsz, l, n);
        Same(c, "C", bsz, l, n);
        Same(d, "D", dim);
        int chunks = (l + sa.Chunk - 1) / sa.Chunk;
        return [new(x.Shape, x.DType), new([bsz, chunks, dim, n], x.DType)];
    }

    /// <summary>
    /// The recurrence written with tensor ops, step by step (what runs on a backend without a kernel; autograd
    /// differentiates it). It materializes one (B, D, N) state per step, so it is a fallback, not a schedule.
    /// </summary>
    private static Tensor[] Composite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor x = inputs[0], delta = inputs[1], a = inputs[2], bm = inputs[3], cm = inputs[4], d = inputs[5];
        int chunk = ((SelectiveScanAttrs)attrs!).Chunk, l = x.Shape[1];
        var h = Tensor.Zeros([x.Shape[0], x.Shape[2], a.Shape[1]], x.DType, x.Device);           // (B, D, N)
        var ys = new Tensor[l];
        var starts = new List<Tensor>();
        for (int t = 0; t < l; t++)
        {
            if (t % chunk == 0) starts.Add(h.Detach());
            (ys[t], h) = Step(h, x.Narrow(1, t, 1).Squeeze(1), delta.Narrow(1, t, 1).Squeeze(1), a,
                bm.Narrow(1, t, 1).Squeeze(1), cm.Narrow(1, t, 1).Squeeze(1), d);
        }
        return [Tensor.Stack(ys, 1), Tensor.Stack([.. starts], 1)];
    }

    /// <summary>
    /// The reverse recurrence with tensor ops (what a backend without the fused kernel runs), the math of
    /// <see cref="Cpu.CpuSelectiveScan"/>'s backward on (B, D, N) tensors: the states h_t are recomputed by a forward
    /// loop, then gh_t = gy_t C_t + a_{t+1} gh_{t+1} runs from the last step to the first.
    /// </summary>
    private static Tensor[] BackwardComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor gy = inputs[0], x = inputs[1], delta = inputs[2], a = inputs[3], bm = inputs[4], cm = inputs[5], d = inputs[6];
        int l = x.Shape[1];
        Tensor At(Tensor z, int t) => z.Narrow(1, t, 1).Squeeze(1);                                  // (B, ·)
        var hs = new Tensor[l + 1];                                                                  // hs[t + 1] = h_t
        hs[0] = Tensor.Zeros([x.Shape[0], x.Shape[2], a.Shape[1]], x.DType, x.Device);
        for (int t = 0; t < l; t++) hs[t + 1] = Step(hs[t], At(x, t), At(delta, t), a, At(bm, t), At(cm, t), d).H;
        var gh = Tensor.Zeros(hs[0].Shape, x.DType, x.Device);                                       // dL/dh_t, (B, D, N)
        var ga = Tensor.Zeros(a.Shape, x.DType, x.Device);
        var gd = Tensor.Zeros(d.Shape, x.DType, x.Device);
        Tensor[] gx = new Tensor[l], gdelta = new Tensor[l], gb = new Tensor[l], gc = new Tensor[l];
        for (int t = l - 1; t >= 0; t--)
        {
            Tensor xt = At(x, t), dt = At(delta, t), bt = At(bm, t).Unsqueeze(1), g = At(gy, t);        // (B, D), (B, D), (B, 1, N), (B, D)
            var decay = (dt.Unsqueeze(2) * a).Exp();                                                  // (B, D, N)
            var ghn = gh + g.Unsqueeze(2) * At(cm, t).Unsqueeze(1);                                   // (B, D, N)
            gc[t] = (g.Unsqueeze(2) * hs[t + 1]).Sum(1);                                              // (B, N)
            gdelta[t] = (ghn * (a * decay * hs[t] + bt * xt.Unsqueeze(2))).Sum(2);                    // (B, D)
            ga = ga + (ghn * dt.Unsqueeze(2) * decay * hs[t]).Sum(0);
            gb[t] = (ghn * (dt * xt).Unsqueeze(2)).Sum(1);                                            // (B, N)
            gx[t] = d * g + dt * (ghn * bt).Sum(2);                                                   // (B, D)
            gd = gd + (g * xt).Sum(0);
            gh = ghn * decay;
        }
        return [Tensor.Stack(gx, 1), Tensor.Stack(gdelta, 1), ga, Tensor.Stack(gb, 1), Tensor.Stack(gc, 1), gd];
    }

    /// <summary>
    /// One step of the recurrence, the form decoding runs token by token: state h (B, D, N), x and Δ (B, D),
    /// B and C (B, N); returns y (B, D) and the new state.
    /// </summary>
    public static (Tensor Y, Tensor H) Step(Tensor h, Tensor x, Tensor delta, Tensor a, Tensor b, Tensor c, Tensor d)
    {
        int bsz = x.Shape[0], dim = x.Shape[1], n = a.Shape[1];
        if (h.Rank != 3 || h.Shape[0] != bsz || h.Shape[1] != dim || h.Shape[2] != n)
            throw new ArgumentException($"SelectiveScan step: state {h.Describe()} must be (B, D, N) = [{bsz}, {dim}, {n}] for x {x.Describe()} and A {a.Describe()}");
        if (b.Rank != 2 || b.Shape[0] != bsz || b.Shape[1] != n || !c.Shape.AsSpan().SequenceEqual(b.Shape))
            throw new ArgumentException($"SelectiveScan step: B {b.Describe()} and C {c.Describe()} must be (B, N) = [{bsz}, {n}]");
        var dt = delta.Unsqueeze(2);                                                                // (B, D, 1)
        var decay = (dt * a).Exp();                                                                  // (B, D, N)
        var hNew = decay * h + dt * x.Unsqueeze(2) * b.Unsqueeze(1);                                 // (B, D, N)
        var y = (hNew * c.Unsqueeze(1)).Sum(2) + x * d;                                              // (B, D)
        return (y, hNew);
    }
}

public sealed partial class Tensor
{
    /// <summary>Mamba's selective scan over the sequence (<see cref="ScanOps"/>): x, Δ (B, L, D), A (D, N), B, C (B, L, N), D (D) to y (B, L, D).</summary>
    public static Tensor SelectiveScan(Tensor x, Tensor delta, Tensor a, Tensor b, Tensor c, Tensor d, int chunk = 64, bool chunkParallel = true) =>
        Apply(ScanOps.SelectiveScan, new SelectiveScanAttrs(chunk, chunkParallel), x, delta, a, b, c, d)[0];
}
