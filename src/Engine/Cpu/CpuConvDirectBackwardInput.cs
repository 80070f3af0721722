using System.Runtime.CompilerServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// Backward input of the direct convolution, any stride, by stride phases ("deconvolution by sub-pixel phases").
/// Along one axis (the other is the same), with stride S, padding P and kernel size KH, the forward reads
///     y[o, oh] = sum_{c, kh} w[o, c, kh] x[c, oh*S - P + kh],     so     dx[c, ih] = sum_{o, kh, oh*S = ih + P - kh} w[o, c, kh] dy[o, oh].
/// Write ih + P = S*q + a with the phase a = (ih + P) % S. Then oh*S = S*q + a - kh needs kh = a (mod S): kh = a + S*i,
/// i < Ta = ceil((KH - a) / S), and oh = q - i. So the phase-a entries of dx are
///     dx_a[c, q] = sum_{o, i < Ta} w[o, c, a + S*i] dy[o, q - i] = sum_{o, t < Ta} w'_a[c, o, t] dy[o, q - (Ta-1) + t],
///     w'_a[c, o, t] = w[o, c, a + S*(Ta-1-t)]              (the sub-kernel of taps = a mod S, flipped, transposed)
/// a stride-1 correlation of dy with a Ta-tap kernel: the forward product of CpuConvDirect (Run) with the same
/// packing, micro-kernels and blocking. Phase a holds the ih in [0, H) with (ih + P) % S = a, i.e. q in [Lo, Lo + Ha),
/// Lo = ceil((P - a) / S) (0 when P &lt;= a); its output q' = q - Lo reads dy rows q' + Lo - (Ta-1) + t. dy is zero-padded
/// once per image by Pd rows on each side, Pd the largest of Ta-1-Lo (first row) and Lo + Ha - OH (last row) over the
/// phases, so every phase reads inside the padded dy from its own first row Lo - (Ta-1) + Pd (the pass's Base); the
/// columns likewise. A phase with no taps (Ta = 0: kernel smaller than the stride, as for a 1x1 stride-2 conv) holds dx
/// entries no output read: they are 0. With stride 1 there is one phase, Lo = P, Ta = KH: dy padded by KH-1-P and the
/// whole kernel flipped, the adjoint of a stride-1 correlation. The taps of all phases add up to KH*KW, so the phases
/// cost the forward's flops, where im2col's path made a (K, L) column matrix and added it back into dx by col2im.
/// </summary>
internal static unsafe partial class CpuConvDirect
{
    /// <summary>
    /// One axis of stride phase a: its first phase index Lo (ih = Lo*S + a - P), its Count of dx entries in [0, size) and
    /// its Taps (kernel offsets k = a mod S).
    /// </summary>
    private readonly record struct PhaseAxis(int Lo, int Count, int Taps)
    {
        public static PhaseAxis Of(int size, int k, int s, int p, int a)
        {
            int lo = p <= a ? 0 : (p - a + s - 1) / s;
            int last = size - 1 + p - a; // S*q of the last ih < size
            int count = last < 0 ? 0 : Math.Max(0, last / s + 1 - lo);
            return new(lo, count, a < k ? (k - a + s - 1) / s : 0);
        }

        /// <summary>Whether the phase computes anything: it has entries and taps.</summary>
        public bool Runs => Count > 0 && Taps > 0;

        /// <summary>The padding of dy this phase needs on each side (see the file's header).</summary>
        public int Pad(int outSize) => Runs ? Math.Max(Taps - 1 - Lo, Lo + Count - outSize) : 0;
    }

    public static void BackwardInput(Tensor dyt, Tensor wt, Tensor dxt, CpuConv.Geometry g, SgemmIsa isa)
    {
        var (mr, _) = ConvKernels.Tile(isa, rows: false);
        var dy = NnKernels.Buf<float>(dyt);
        var w = NnKernels.Buf<float>(wt);
        var dx = NnKernels.Buf<float>(dxt);
        int sh = g.A.StrideH, sw = g.A.StrideW;
        var rowsOf = new PhaseAxis[sh];
        var colsOf = new PhaseAxis[sw];
        for (int a = 0; a < sh; a++) rowsOf[a] = PhaseAxis.Of(g.H, g.KH, sh, g.A.PadH, a);
        for (int b = 0; b < sw; b++) colsOf[b] = PhaseAxis.Of(g.W, g.KW, sw, g.A.PadW, b);
        int padH = 0, padW = 0;
        foreach (var r in rowsOf) padH = Math.Max(padH, r.Pad(g.OH));
        foreach (var c in colsOf) padW = Math.Max(padW, c.Pad(g.OW));
        // dy (Og, OH, OW) padded by padH, padW: the input plane of every phase (its kernel sizes matter only for Offsets)
        var pl = new Plane(g.Og, g.OH, g.OW, 1, 1, padH, padW);
        int mPad = (g.Cg + mr - 1) / mr * mr;
        var passes = new List<Pass>();
        var offs = new List<int>();
        // tap (kh, kw) -> its pass, and its column in that pass's w', ((o*Ta + i)*Tb + j) less o*Ta*Tb; -1: a phase without entries
        var tapPass = new int[g.KH * g.KW];
        var tapColumn = new int[g.KH * g.KW];
        Array.Fill(tapPass, -1);
        int packedFloats = 0;
        bool empty = false; // a phase with entries but no taps: its dx entries are 0
        for (int a = 0; a < sh; a++)
            for (int b = 0; b < sw; b++)
            {
                PhaseAxis r = rowsOf[a], c = colsOf[b];
                if (r.Count == 0 || c.Count == 0) continue;
                if (!r.Runs || !c.Runs) { empty = true; continue; }
                var phasePlane = pl with { KH = r.Taps, KW = c.Taps };
                int k = phasePlane.K, ih0 = r.Lo * sh + a - g.A.PadH, iw0 = c.Lo * sw + b - g.A.PadW;
                int base0 = (r.Lo - (r.Taps - 1) + padH) * pl.Wq + c.Lo - (c.Taps - 1) + padW;
                for (int i = 0; i < r.Taps; i++)
                    for (int j = 0; j < c.Taps; j++)
                    {
                        int tap = (a + sh * (r.Taps - 1 - i)) * g.KW + b + sw * (c.Taps - 1 - j); // w'[c, o, i, j] = w[o, c, tap]
                        tapPass[tap] = passes.Count;
                        tapColumn[tap] = i * c.Taps + j;
                    }
                passes.Add(new Pass(k, base0, r.Count, c.Count, ih0 * g.W + iw0, sh * g.W, sw, g.H * g.W, packedFloats, offs.Count));
                offs.AddRange(phasePlane.Offsets(k));
                packedFloats += g.G * mPad * k;
            }
        if (empty) dxt.ElementSpan<float>().Clear();
        using var packed = new Scratch<float>(packedFloats); // per phase, per group: w'_ab (Cg, Og*Ta*Tb) in slivers of MR rows
        if (mPad != g.Cg) packed.Clear(); // the rows past Cg of the last sliver
        fixed (float* pw = w.Data, pp = packed.Array)
            for (int grp = 0; grp < g.G; grp++)
                PackPhases(pw + w.Offset + grp * g.Og * g.K, g, mr, tapPass, tapColumn, passes, pp, grp * mPad);
        Run(pl, packed.Array, [.. offs], [.. passes], g.Cg, g.G, g.N, dy.Data, dy.Offset, g.O * g.L, dx.Data, dx.Offset, g.C * g.H * g.W, null, isa);
    }

    /// <summary>
    /// The weights of every phase from one group's w (Og, Cg, KH, KW), read once in order: phase (a, b) gets
    /// w'[c, (o*Ta + i)*Tb + j] = w[o, c, a + SH*(Ta-1-i), b + SW*(Tb-1-j)] (Ta, Tb its taps along each axis), packed as
    /// PackRows packs its rows (Cg of them, K' = Og*Ta*Tb long) at APacked + group*mPad*K'. Stride 1: one phase, the
    /// whole kernel flipped, w[o, c, KH-1-i, KW-1-j]. (Gathering w' phase by phase, c outer, took 5% of perf's samples
    /// of `conv --only "[2,128,40,40]x[256"`, all three ops, against 24% for the forward and backward-input micro-kernel.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackPhases(float* w, CpuConv.Geometry g, int mr, int[] tapPass, int[] tapColumn, List<Pass> passes, float* packed, int groupRows)
    {
        int taps = g.KH * g.KW;
        // per tap: where its column starts (o = 0, c = 0) in its phase's packing, that phase's K' and taps per o
        var start = new long[taps];
        var k2 = new int[taps];
        var perO = new int[taps];
        for (int t = 0; t < taps; t++)
        {
            if (tapPass[t] < 0) continue;
            var p = passes[tapPass[t]];
            (k2[t], perO[t]) = (p.K, p.K / g.Og);
            start[t] = p.APacked + (long)groupRows * p.K + tapColumn[t] * mr;
        }
        // w[o, :, tap] (Cg floats, stride KH*KW) into its column of every sliver: runs of MR floats MR*K' apart
        for (int o = 0; o < g.Og; o++)
            for (int t = 0; t < taps; t++)
            {
                if (tapPass[t] < 0) continue;
                float* src = w + (nint)o * g.Cg * taps + t;
                float* dst = packed + start[t] + (long)o * perO[t] * mr;
                for (int c0 = 0; c0 < g.Cg; c0 += mr, dst += (nint)mr * k2[t])
                    for (int r = 0, rows = Math.Min(mr, g.Cg - c0); r < rows; r++) dst[r] = src[(nint)(c0 + r) * taps];
            }
    }
}
