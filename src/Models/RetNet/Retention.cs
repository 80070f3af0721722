using ManagedTensor.Nn;

namespace ManagedTensor.Models.RetNet;

/// <summary>Which of retention's three equal forms computes a sequence.</summary>
public enum RetentionForm { Parallel, Chunkwise }

/// <summary>
/// Multi-scale retention (Sun et al. 2023, "Retentive Network"), laid out as torchscale's MultiScaleRetention:
/// q = x Wq, k = x Wk / sqrt(dk), v = x Wv, g = x Wg; q and k rotated by position (torchscale's theta_shift:
/// interleaved pairs, angle_i = 10000^-(i / (dk/2 - 1))); per head h a decay gamma_h = 1 - 2^(-5-h); then
///   o_n = r_n sum_{m &lt;= n} gamma^(n-m) (q_n . k_m) v_m,     r_n = (sum_{i=0..n} gamma^i)^(-1/2)
/// an RMS norm over each head's dv channels (no gain: torchscale's group norm), y = (swish(g) * o) Wo.
///
/// The same o comes three ways (the point of the layer):
///   parallel   ((Q K^T) * D) V with D[n, m] = r_n gamma^(n-m) for m &lt;= n: training, all positions at once;
///   recurrent  S_n = gamma S_(n-1) + k_n^T v_n,  o_n = r_n q_n S_n: decoding, a (dk, dv) state per head;
///   chunkwise  per chunk of c positions, the parallel form inside plus (Q * gamma^(i+1)) S from the chunks
///              before, then S = gamma^c S + (K * gamma^(c-1-j))^T V: linear in T, parallel within a chunk.
/// r_n is torchscale's row normalization of the decay mask (mask / sqrt(mask.sum(-1))), which its recurrent form
/// reproduces by carrying the running sum. torchscale's parallel form also divides each row by
/// max(1, sum |QK^T * D|), detached; the group norm that follows cancels any per-row scale (up to its eps), so it is
/// left out here and the three forms agree exactly. Backward: through autograd of the composite ops.
/// </summary>
public sealed class Retention : Module
{
    public Retention(int dim, int heads, int valueDim, Generator gen, Device device, double normEps = 1e-6)
    {
        if (heads < 1 || dim % heads != 0) throw new ArgumentException($"Retention: dim {dim} must be a multiple of the {heads} heads");
        if (valueDim % heads != 0) throw new ArgumentException($"Retention: value dim {valueDim} must be a multiple of the {heads} heads");
        if (dim / heads % 2 != 0) throw new ArgumentException($"Retention: the key head size {dim / heads} must be even (rotation works on pairs)");
        Dim = dim;
        Heads = heads;
        ValueDim = valueDim;
        NormEps = normEps;
        Q = Child("q_proj", new Linear(dim, dim, false, gen, device, initStd: 0.02));
        K = Child("k_proj", new Linear(dim, dim, false, gen, device, initStd: 0.02));
        V = Child("v_proj", new Linear(dim, valueDim, false, gen, device, initStd: 0.02));
        G = Child("g_proj", new Linear(dim, valueDim, false, gen, device, initStd: 0.02));
        Out = Child("out_proj", new Linear(valueDim, dim, false, gen, device, initStd: 0.02));
        Gamma = Enumerable.Range(0, heads).Select(h => 1 - Math.Pow(2, -5 - h)).ToArray();
    }

    public int Dim { get; }
    public int Heads { get; }
    public int ValueDim { get; }
    public double NormEps { get; }
    public int KeyHead => Dim / Heads;
    public int ValueHead => ValueDim / Heads;
    public double[] Gamma { get; }   // per head
    public Linear Q { get; }
    public Linear K { get; }
    public Linear V { get; }
    public Linear G { get; }
    public Linear Out { get; }

    /// <summary>x (B, T, C) from position 0 -> (B, T, C), by the parallel or the chunkwise form.</summary>
    public Tensor Forward(Tensor x, RetentionForm form = RetentionForm.Parallel, int chunk = 16)
    {
        int b = x.Shape[0], t = x.Shape[1];
        var (q, k, v) = Project(x, 0);                                           // (B, H, T, dk), (B, H, T, dv)
        var o = form == RetentionForm.Parallel ? Parallel(q, k, v) : Chunkwise(q, k, v, chunk);
        return Finish(x, o);
    }

    /// <summary>
    /// One position <paramref name="position"/> for each sequence, x (B, 1, C), through the recurrent form; the
    /// state (B, H, dk, dv) is null at position 0. Returns y (B, 1, C) and the new state.
    /// </summary>
    public (Tensor Y, Tensor State) Step(Tensor x, Tensor? state, int position)
    {
        var (q, k, v) = Project(x, position);                                    // (B, H, 1, dk), (B, H, 1, dv)
        var (o, s) = Recurrent(q, k, v, state, position);
        return (Finish(x, o), s);
    }

    /// <summary>
    /// The recurrent form for one position: S = gamma S + k^T v, o = r_n q S, with q, k (B, H, 1, dk), v (B, H, 1, dv)
    /// and the state (B, H, dk, dv) (null at position 0). Returns o (B, H, 1, dv) and the new state.
    /// </summary>
    public (Tensor O, Tensor State) Recurrent(Tensor q, Tensor k, Tensor v, Tensor? state, int position)
    {
        var kv = k.MT.MatMul(v);                                                 // (B, H, dk, dv)
        var s = state is null ? kv : state * Column(Gamma, q) + kv;
        var o = q.MatMul(s) * Column(Gamma.Select(g => RowScale(g, position)).ToArray(), q);  // (B, H, 1, dv)
        return (o, s);
    }

    /// <summary>q, k (rotated; k scaled by 1/sqrt(dk)) and v, split into heads, for positions start, start + 1, ...</summary>
    private (Tensor Q, Tensor K, Tensor V) Project(Tensor x, int start)
    {
        if (x.Rank != 3 || x.Shape[2] != Dim) throw new ArgumentException($"Retention: input {x.Describe()} must be (B, T, {Dim})");
        int b = x.Shape[0], t = x.Shape[1];
        var q = Q.Forward(x).Reshape(b, t, Heads, KeyHead).Transpose(1, 2);                               // (B, H, T, dk)
        var k = K.Forward(x).MulScalar(1 / Math.Sqrt(KeyHead)).Reshape(b, t, Heads, KeyHead).Transpose(1, 2);
        var v = V.Forward(x).Reshape(b, t, Heads, ValueHead).Transpose(1, 2);                             // (B, H, T, dv)
        var (sin, cos) = Rotation(start, t, KeyHead, x);                                                  // (T, dk)
        return (ThetaShift(q, sin, cos), ThetaShift(k, sin, cos), v);
    }

    /// <summary>Group norm per head, the swish gate, the output projection: o (B, H, T, dv) -> (B, T, C).</summary>
    private Tensor Finish(Tensor x, Tensor o)
    {
        int b = x.Shape[0], t = x.Shape[1];
        var normed = o.Transpose(1, 2).RmsNorm(null, NormEps).Reshape(b, t, ValueDim);  // (B, T, H*dv)
        return Out.Forward(G.Forward(x).Silu() * normed);
    }

    /// <summary>((Q K^T) * D) V with D[h, n, m] = r_n gamma_h^(n-m) on and below the diagonal.</summary>
    public Tensor Parallel(Tensor q, Tensor k, Tensor v)
    {
        int t = q.Shape[2];
        var d = new double[Heads * t * t];
        for (int h = 0; h < Heads; h++)
            for (int n = 0; n < t; n++)
                for (int m = 0; m <= n; m++) d[(h * t + n) * t + m] = Math.Pow(Gamma[h], n - m) * RowScale(Gamma[h], n);
        var mask = Const(d, [Heads, t, t], q);
        return (q.MatMul(k.MT) * mask).MatMul(v);                                // (B, H, T, dv)
    }

    /// <summary>The chunkwise form: chunks of <paramref name="chunk"/> positions (the last may be shorter).</summary>
    public Tensor Chunkwise(Tensor q, Tensor k, Tensor v, int chunk)
    {
        if (chunk < 1) throw new ArgumentOutOfRangeException(nameof(chunk), $"Retention: chunk size {chunk} must be at least 1");
        int t = q.Shape[2];
        Tensor? s = null;                                                        // (B, H, dk, dv): positions before the chunk
        var outs = new List<Tensor>();
        for (int start = 0; start < t; start += chunk)
        {
            int c = Math.Min(chunk, t - start);
            Tensor qc = q.Narrow(2, start, c), kc = k.Narrow(2, start, c), vc = v.Narrow(2, start, c);
            double[] inner = new double[Heads * c * c], cross = new double[Heads * c], decayK = new double[Heads * c], row = new double[Heads * c];
            for (int h = 0; h < Heads; h++)
                for (int i = 0; i < c; i++)
                {
                    for (int j = 0; j <= i; j++) inner[(h * c + i) * c + j] = Math.Pow(Gamma[h], i - j);
                    cross[h * c + i] = Math.Pow(Gamma[h], i + 1);
                    decayK[h * c + i] = Math.Pow(Gamma[h], c - 1 - i);
                    row[h * c + i] = RowScale(Gamma[h], start + i);
                }
            var o = (qc.MatMul(kc.MT) * Const(inner, [Heads, c, c], q)).MatMul(vc);     // (B, H, c, dv) within the chunk
            if (s is not null) o += qc.MatMul(s) * Const(cross, [Heads, c, 1], q);      // from the chunks before
            outs.Add(o * Const(row, [Heads, c, 1], q));
            var kv = (kc * Const(decayK, [Heads, c, 1], q)).MT.MatMul(vc);             // (B, H, dk, dv)
            s = s is null ? kv : s * Column(Gamma.Select(g => Math.Pow(g, c)).ToArray(), q) + kv;
        }
        return outs.Count == 1 ? outs[0] : Tensor.Cat(outs.ToArray(), 2);
    }

    /// <summary>r_n = (sum_{i=0..n} gamma^i)^(-1/2), the decay mask's row normalization.</summary>
    private static double RowScale(double gamma, int n) => 1 / Math.Sqrt((1 - Math.Pow(gamma, n + 1)) / (1 - gamma));

    /// <summary>x * cos + rotate_every_two(x) * sin, rotate_every_two(x)[2i, 2i+1] = (-x[2i+1], x[2i]).</summary>
    private static Tensor ThetaShift(Tensor x, Tensor sin, Tensor cos)
    {
        int[] shape = x.Shape;
        var pairs = x.Reshape([.. shape[..^1], shape[^1] / 2, 2]);                // (..., dk/2, 2)
        var rotated = Tensor.Cat([pairs.Narrow(-1, 1, 1).Neg(), pairs.Narrow(-1, 0, 1)], -1).Reshape(shape);
        return x * cos + rotated * sin;
    }

    /// <summary>sin and cos of position * angle for positions start..start + t - 1: (T, dk), each angle used for a pair.</summary>
    private static (Tensor Sin, Tensor Cos) Rotation(int start, int t, int dk, Tensor like)
    {
        int half = dk / 2;
        double[] sin = new double[t * dk], cos = new double[t * dk];
        for (int i = 0; i < half; i++)
        {
            double angle = 1 / Math.Pow(10000, half == 1 ? 0 : (double)i / (half - 1));   // torch.linspace(0, 1, dk/2)
            for (int n = 0; n < t; n++)
            {
                double a = (start + n) * angle;
                sin[n * dk + 2 * i] = sin[n * dk + 2 * i + 1] = Math.Sin(a);
                cos[n * dk + 2 * i] = cos[n * dk + 2 * i + 1] = Math.Cos(a);
            }
        }
        return (Const(sin, [t, dk], like), Const(cos, [t, dk], like));
    }

    private static Tensor Column(double[] perHead, Tensor like) => Const(perHead, [perHead.Length, 1, 1], like);

    private static Tensor Const(double[] values, int[] shape, Tensor like) =>
        Tensor.FromArray(values, shape).To(like.DType).To(like.Device);
}
