namespace ManagedTensor;

/// <summary>Chunk length of a WKV (spacing of the saved states; unit of the parallel schedule) and the schedule.</summary>
public sealed record WkvAttrs(int Chunk = 32, bool ChunkParallel = true) : OpAttrs;

/// <summary>
/// RWKV-6 ("Finch", Peng et al. 2024) WKV: linear attention with a data-dependent, per-channel decay, per head:
///   y_t = r_t (S_{t-1} + diag(u) k_tᵀ v_t),     S_t = diag(w_t) S_{t-1} + k_tᵀ v_t,     w_t = exp(logw_t)
/// with a K x K state per head (key channel by value channel). Inputs r, k, v, logw (B, T, H, K) and the bonus
/// u (H, K); logw &lt;= 0 is the log of the decay (RWKV-6 computes it as -exp(w_raw)); taking the log keeps the
/// gradient exact where w is near 0 or 1. Outputs y (B, T, H, K) and the states at each chunk start
/// (B, ceil(T / Chunk), H, K, K), which the backward op restarts from.
/// Why RWKV-6 rather than RWKV-7: its transition is diagonal (a decay per channel), so the chunked schedule is a
/// product of diagonals and the backward pass a plain reverse recurrence; RWKV-7's transition (diag(w) - κ̂ᵀ(a ⊙ κ̂))
/// is a full matrix per step, and its reference CUDA backward keeps more state. RWKV-6 is also what the
/// published single-GPU guides train.
/// </summary>
public static class WkvOps
{
    public static readonly Op Wkv6 = OpRegistry.Declare("Wkv6");
    public static readonly Op Wkv6Backward = OpRegistry.Declare("Wkv6Backward");

    internal static void Register()
    {
        // Ids by name, not the static fields: Register runs inside OpRegistry's static constructor, which the first
        // touch of those fields can trigger while they are still unset (Declare returns the same id for a name).
        Op forward = OpRegistry.Declare("Wkv6"), backward = OpRegistry.Declare("Wkv6Backward");
        OpRegistry.Define(new OpDef(forward, "Wkv6")
        {
            Inputs = ["r", "k", "v", "logw", "u"],
            Outputs = ["y", "chunk_states"],
            Attrs = typeof(WkvAttrs),
            Summary = "RWKV-6 WKV: y_t = r_t (S + diag(u) k_t^T v_t), S = diag(exp(logw_t)) S + k_t^T v_t",
            Shapes = Shapes,
            Backward = (node, y, g) =>
            {
                var i = node.Inputs;
                return [.. Tensor.Apply(backward, node.Attrs, g.Contiguous(), i[0], i[1], i[2], i[3], i[4], node.Saved[0])];
            },
            Fallback = Composite,
        });
        OpRegistry.Define(new OpDef(backward, "Wkv6Backward")
        {
            Inputs = ["dy", "r", "k", "v", "logw", "u", "chunk_states"],
            Outputs = ["dr", "dk", "dv", "dlogw", "du"],
            Attrs = typeof(WkvAttrs),
            Summary = "gradients of Wkv6 from dy, recomputing each chunk's states from the saved chunk starts",
            Shapes = (inputs, attrs) => [.. inputs[1..6].Select(t => new TensorSpec(t.Shape, t.DType))],
            Fallback = BackwardComposite,
        });
        var cpu = Cpu.CpuBackend.Instance.Kernels;
        KernelGuard f32OrF64 = (i, a) => i[0].DType is DType.F32 or DType.F64;
        cpu.Add(forward, (i, o, a) => Cpu.CpuWkv.Forward(i[0], i[1], i[2], i[3], i[4], o[0], o[1], (WkvAttrs)a!), f32OrF64);
        cpu.Add(backward, (i, o, a) =>
            Cpu.CpuWkv.Backward(i[0], i[1], i[2], i[3], i[4], i[5], i[6], o[0], o[1], o[2], o[3], o[4], (WkvAttrs)a!), f32OrF64);
    }

    private static TensorSpec[] Shapes(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor r = inputs[0], u = inputs[4];
        if (attrs is not WkvAttrs wa) throw new ArgumentException("Wkv6 takes WkvAttrs(chunk, chunkParallel)");
        if (wa.Chunk < 1) throw new ArgumentException($"Wkv6: chunk must be at least 1, got {wa.Chunk}");
        if (r.Rank != 4 || r.Shape[1] < 1) throw new ArgumentException($"Wkv6: r {r.Describe()} must be (B, T, H, K) with T >= 1");
        if (!r.DType.IsFloat()) throw new ArgumentException($"Wkv6: r {r.Describe()} must be floating point");
        string[] names = ["r", "k", "v", "logw"];
        for (int i = 1; i < 4; i++)
        {
            if (!inputs[i].Shape.AsSpan().SequenceEqual(r.Shape))
                throw new ArgumentException($"Wkv6: {names[i]} {inputs[i].Describe()} must have the shape of r {r.Describe()} (B, T, H, K)");
            if (inputs[i].DType != r.DType) throw new ArgumentException($"Wkv6: {names[i]} {inputs[i].Describe()} must have the dtype of r {r.Describe()}");
        }
        int h = r.Shape[2], k = r.Shape[3];
        if (u.Rank != 2 || u.Shape[0] != h || u.Shape[1] != k || u.DType != r.DType)
            throw new ArgumentException($"Wkv6: u {u.Describe()} must be (H, K) = [{h}, {k}] of r {r.Describe()}, same dtype");
        int chunks = (r.Shape[1] + wa.Chunk - 1) / wa.Chunk;
        return [new(r.Shape, r.DType), new([r.Shape[0], chunks, h, k, k], r.DType)];
    }

    /// <summary>The recurrence with tensor ops, token by token (for backends without a kernel; autograd differentiates it).</summary>
    private static Tensor[] Composite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor r = inputs[0], k = inputs[1], v = inputs[2], logw = inputs[3], u = inputs[4];
        int chunk = ((WkvAttrs)attrs!).Chunk, t = r.Shape[1], hk = r.Shape[3];
        var s = Tensor.Zeros([r.Shape[0], r.Shape[2], hk, hk], r.DType, r.Device);                   // (B, H, K, K)
        var ys = new Tensor[t];
        var starts = new List<Tensor>();
        Tensor At(Tensor x, int i) => x.Narrow(1, i, 1).Squeeze(1);                                    // (B, H, K)
        for (int i = 0; i < t; i++)
        {
            if (i % chunk == 0) starts.Add(s.Detach());
            (ys[i], s) = Step(s, At(r, i), At(k, i), At(v, i), At(logw, i), u);
        }
        return [Tensor.Stack(ys, 1), Tensor.Stack([.. starts], 1)];
    }

    /// <summary>
    /// The reverse recurrence with tensor ops (for backends without the fused kernel), the math of
    /// <see cref="Cpu.CpuWkv"/>'s backward on (B, H, K, K) tensors, with the states recomputed by a forward loop.
    /// </summary>
    private static Tensor[] BackwardComposite(Tensor[] inputs, OpAttrs? attrs)
    {
        Tensor gy = inputs[0], r = inputs[1], k = inputs[2], v = inputs[3], logw = inputs[4], u = inputs[5];
        int t = r.Shape[1], hk = r.Shape[3];
        Tensor At(Tensor x, int i) => x.Narrow(1, i, 1).Squeeze(1);                                    // (B, H, K)
        var before = new Tensor[t];                                                                    // S_{t-1}, (B, H, K, K)
        var s = Tensor.Zeros([r.Shape[0], r.Shape[2], hk, hk], r.DType, r.Device);
        for (int i = 0; i < t; i++)
        {
            before[i] = s;
            s = Step(s, At(r, i), At(k, i), At(v, i), At(logw, i), u).S;
        }
        var g = Tensor.Zeros(s.Shape, r.DType, r.Device);                                            // dL/dS_t
        var gu = Tensor.Zeros(u.Shape, r.DType, r.Device);
        Tensor[] gr = new Tensor[t], gk = new Tensor[t], gv = new Tensor[t], glogw = new Tensor[t];
        for (int i = t - 1; i >= 0; i--)
        {
            Tensor ri = At(r, i), ki = At(k, i), vi = At(v, i), w = At(logw, i).Exp(), gyi = At(gy, i), sp = before[i];
            var gyv = (gyi * vi).Sum(2, keepDim: true);                                               // (B, H, 1)
            gr[i] = (sp * gyi.Unsqueeze(2)).Sum(3) + u * ki * gyv;
            gu = gu + (ri * ki * gyv).Sum(0);
            gk[i] = ri * u * gyv + (g * vi.Unsqueeze(2)).Sum(3);
            gv[i] = gyi * (ri * u * ki).Sum(2, keepDim: true) + (g * ki.Unsqueeze(3)).Sum(2);
            glogw[i] = w * (g * sp).Sum(3);
            g = w.Unsqueeze(3) * g + ri.Unsqueeze(3) * gyi.Unsqueeze(2);
        }
        return [Tensor.Stack(gr, 1), Tensor.Stack(gk, 1), Tensor.Stack(gv, 1), Tensor.Stack(glogw, 1), gu];
    }

    /// <summary>
    /// One token of the recurrence, the form decoding runs: state S (B, H, K, K), r, k, v, logw (B, H, K), u (H, K);
    /// returns y (B, H, K) and the new state.
    /// </summary>
    public static (Tensor Y, Tensor S) Step(Tensor s, Tensor r, Tensor k, Tensor v, Tensor logw, Tensor u)
    {
        if (r.Rank != 3 || s.Rank != 4 || s.Shape[0] != r.Shape[0] || s.Shape[1] != r.Shape[1] || s.Shape[2] != r.Shape[2] || s.Shape[3] != r.Shape[2])
            throw new ArgumentException($"Wkv6 step: state {s.Describe()} must be (B, H, K, K) for r {r.Describe()} (B, H, K)");
        var kv = k.Unsqueeze(3) * v.Unsqueeze(2);                                                    // (B, H, K, K)
        var y = (r.Unsqueeze(3) * (s + u.Unsqueeze(2) * kv)).Sum(2);                                 // (B, H, K)
        var next = logw.Exp().Unsqueeze(3) * s + kv;                                                 // (B, H, K, K)
        return (y, next);
    }
}

public sealed partial class Tensor
{
    /// <summary>RWKV-6 WKV (<see cref="WkvOps"/>): r, k, v, logw (B, T, H, K), u (H, K) to y (B, T, H, K).</summary>
    public static Tensor Wkv6(Tensor r, Tensor k, Tensor v, Tensor logw, Tensor u, int chunk = 32, bool chunkParallel = true) =>
        Apply(WkvOps.Wkv6, new WkvAttrs(chunk, chunkParallel), r, k, v, logw, u)[0];
}
