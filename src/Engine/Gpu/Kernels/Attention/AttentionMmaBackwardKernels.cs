using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// The tensor-core backward for 16-bit inputs and head dim 64, as two kernels so that nothing is
/// accumulated across groups (no atomics, deterministic), at the price of computing S and dP twice:
///
/// dK/dV: a group of warps owns 16 keys per warp of one kv head and walks every query head of its
/// group and every query tile of 64 that sees those keys. Per tile, in registers (transposed roles:
/// rows are keys, columns queries): S^T = K Q^T, P^T = exp2(S^T log2(e) scale - lse log2(e)), dV += P'^T dO,
/// dP^T = V dO^T, dS^T = P^T (dP'^T - Di), dK += dS^T Q (P' and dP' carry the dropout multiplier).
/// Shared: K, V (staged once), Q, Q^T, dO, dO^T (per tile): 6 x 8 KB = 48 KB; lse and Di are read per
/// column from global memory (they are small and cached).
///
/// dQ: a group owns 16 query rows per warp and walks the key tiles it sees: S = Q K^T, P, dP = dO V^T,
/// dS = P (dP' - Di), dQ += dS K. Shared: Q, dO (once), K, K^T, V (per tile): 40 KB.
///
/// The plain path (CPU accelerator) hands P'^T / dS^T / dS over through shared buffers that are free
/// at that point (Q and dO, or V), between barriers.
/// </summary>
internal static class AttentionMmaBackwardKernels
{
    private const int TileWords = 2048; // 64 x 64 16-bit values
    private const int RowPairs = 32;    // D = 64

    public static bool Supports(int d) => d == 64;

    /// <summary>Grid (ceil(S / (16 warps)), B Hkv); dk, dv of the group's keys.</summary>
    public static void BackwardDkDv<TE, TM>(ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v, ArrayView<ushort> dout,
        ArrayView<float> lse, ArrayView<float> delta, ArrayView<ushort> dk, ArrayView<ushort> dv, AttentionParams p)
        where TE : struct, IHalfFormat where TM : struct, IMmaMath<TE>
    {
        int tid = Group.IdxX, threads = Group.DimX, tile = Grid.IdxX, kvh = Grid.IdxY;
        int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        TE e = default;
        TM math = default;
        var kSm = SharedMemory.Allocate<uint>(TileWords);
        var vSm = SharedMemory.Allocate<uint>(TileWords);
        var qSm = SharedMemory.Allocate<uint>(TileWords);  // Q; P'^T in the plain path
        var qtSm = SharedMemory.Allocate<uint>(TileWords); // Q^T
        var dSm = SharedMemory.Allocate<uint>(TileWords);  // dO; dS^T in the plain path
        var dtSm = SharedMemory.Allocate<uint>(TileWords); // dO^T
        var q32 = q.Cast<uint>();
        var do32 = dout.Cast<uint>();
        int blockK = threads / 2, j0 = tile * blockK;
        long kvBase = (long)kvh * p.S * RowPairs;
        MmaTiles.StageRows(k.Cast<uint>(), kvBase + (long)j0 * RowPairs, p.S - j0, RowPairs, kSm, tid, threads, blockK);
        MmaTiles.StageRows(v.Cast<uint>(), kvBase + (long)j0 * RowPairs, p.S - j0, RowPairs, vSm, tid, threads, blockK);
        int warpRow = warp * 16 + g;
        int keyA = j0 + warpRow, keyB = keyA + 8;
        float scaleLog2 = p.Scale * AttentionMmaKernels.Log2E;
        Frags8 dkAcc = default, dvAcc = default;
        int group = p.H / p.Hkv, b = kvh / p.Hkv, hk = kvh % p.Hkv;
        int firstRow = p.FirstRowSeeing(j0);
        for (int gh = 0; gh < group; gh++)
        {
            int bh = b * p.H + hk * group + gh;
            for (int i0 = firstRow; i0 < p.T; i0 += 64)
            {
                long rowBase = ((long)bh * p.T + i0) * RowPairs;
                Group.Barrier();
                MmaTiles.StageRows(q32, rowBase, p.T - i0, RowPairs, qSm, tid, threads);
                MmaTiles.StageTransposed(q32, rowBase, p.T - i0, RowPairs, qtSm, tid, threads);
                MmaTiles.StageRows(do32, rowBase, p.T - i0, RowPairs, dSm, tid, threads);
                MmaTiles.StageTransposed(do32, rowBase, p.T - i0, RowPairs, dtSm, tid, threads);
                Group.Barrier();

                var s = math.Product(kSm, qSm, warpRow, g, t, 64);  // S^T: rows keys, columns queries
                var dp = math.Product(vSm, dSm, warpRow, g, t, 64); // dP^T = V dO^T
                var w = ColumnWeights(s, p, lse, bh, i0 + 2 * t, keyA, keyB, scaleLog2);
                Frags8 wDropped = w, ds;
                if (p.Dropout != 0)
                {
                    var keep = ColumnKeep(p, bh, i0 + 2 * t, keyA, keyB);
                    wDropped = MmaTiles.Multiply(w, keep);
                    dp = MmaTiles.Multiply(dp, keep);
                }
                ds = ColumnGrad(w, dp, p, delta, bh, i0 + 2 * t);
                if (math.ReadsWeightsFromShared)
                {
                    Group.Barrier(); // every warp has read Q and dO: they now carry P'^T and dS^T
                    MmaTiles.StoreP(e, wDropped, qSm, warpRow, t);
                    MmaTiles.StoreP(e, ds, dSm, warpRow, t);
                    Group.Barrier();
                }
                dvAcc = math.Accumulate(dvAcc, wDropped, dtSm, qSm, warpRow, 0, g, t); // dV += P'^T dO
                dkAcc = math.Accumulate(dkAcc, ds, qtSm, dSm, warpRow, 0, g, t);       // dK += dS^T Q
            }
        }
        var dk32 = dk.Cast<uint>();
        var dv32 = dv.Cast<uint>();
        if (keyA < p.S)
        {
            long word = kvBase + (long)keyA * RowPairs + t;
            MmaTiles.StoreRow<TE, TM>(math, dkAcc, dk32, word, p.Scale, upper: false);
            MmaTiles.StoreRow<TE, TM>(math, dvAcc, dv32, word, 1f, upper: false);
        }
        if (keyB < p.S)
        {
            long word = kvBase + (long)keyB * RowPairs + t;
            MmaTiles.StoreRow<TE, TM>(math, dkAcc, dk32, word, p.Scale, upper: true);
            MmaTiles.StoreRow<TE, TM>(math, dvAcc, dv32, word, 1f, upper: true);
        }
    }

    /// <summary>Grid (ceil(T / (16 warps)), B H); dq of the group's query rows.</summary>
    public static void BackwardDq<TE, TM>(ArrayView<ushort> q, ArrayView<ushort> k, ArrayView<ushort> v, ArrayView<ushort> dout,
        ArrayView<float> lse, ArrayView<float> delta, ArrayView<ushort> dq, AttentionParams p)
        where TE : struct, IHalfFormat where TM : struct, IMmaMath<TE>
    {
        int tid = Group.IdxX, threads = Group.DimX, tile = Grid.IdxX, bh = Grid.IdxY;
        int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        TE e = default;
        TM math = default;
        var qSm = SharedMemory.Allocate<uint>(TileWords);
        var dSm = SharedMemory.Allocate<uint>(TileWords);  // dO
        var kSm = SharedMemory.Allocate<uint>(TileWords);
        var ktSm = SharedMemory.Allocate<uint>(TileWords); // K^T
        var vSm = SharedMemory.Allocate<uint>(TileWords);  // V; dS in the plain path
        var k32 = k.Cast<uint>();
        var v32 = v.Cast<uint>();
        int blockQ = threads / 2, r0 = tile * blockQ;
        long rowBase = ((long)bh * p.T + r0) * RowPairs;
        long kvBase = (long)p.KvHead(bh) * p.S * RowPairs;
        MmaTiles.StageRows(q.Cast<uint>(), rowBase, p.T - r0, RowPairs, qSm, tid, threads, blockQ);
        MmaTiles.StageRows(dout.Cast<uint>(), rowBase, p.T - r0, RowPairs, dSm, tid, threads, blockQ);
        int warpRow = warp * 16 + g;
        int rowA = r0 + warpRow, rowB = rowA + 8;
        int endA = p.VisibleEnd(rowA), endB = p.VisibleEnd(rowB);
        float lseA = rowA < p.T ? lse[(long)bh * p.T + rowA] * AttentionMmaKernels.Log2E : 0f;
        float lseB = rowB < p.T ? lse[(long)bh * p.T + rowB] * AttentionMmaKernels.Log2E : 0f;
        float deltaA = rowA < p.T ? delta[(long)bh * p.T + rowA] : 0f;
        float deltaB = rowB < p.T ? delta[(long)bh * p.T + rowB] : 0f;
        int kLimit = p.VisibleEnd(XMath.Min(p.T, r0 + blockQ) - 1);
        int firstEnd = p.VisibleEnd(r0);
        float scaleLog2 = p.Scale * AttentionMmaKernels.Log2E;
        Frags8 dqAcc = default;
        for (int j0 = 0; j0 < kLimit; j0 += 64)
        {
            int n = XMath.Min(64, kLimit - j0);
            Group.Barrier();
            MmaTiles.StageRows(k32, kvBase + (long)j0 * RowPairs, n, RowPairs, kSm, tid, threads);
            MmaTiles.StageTransposed(k32, kvBase + (long)j0 * RowPairs, n, RowPairs, ktSm, tid, threads);
            MmaTiles.StageRows(v32, kvBase + (long)j0 * RowPairs, n, RowPairs, vSm, tid, threads);
            Group.Barrier();

            var s = math.Product(qSm, kSm, warpRow, g, t, 64);
            var dp = math.Product(dSm, vSm, warpRow, g, t, 64); // dP = dO V^T
            s = MmaTiles.ScaleMask(s, scaleLog2, j0 + 64 > firstEnd, j0 + 2 * t, endA, endB);
            var w = MmaTiles.Exp2(s, lseA, lseB); // P = exp2(s - lse log2 e): lse = +inf (no visible key) gives 0
            if (p.Dropout != 0) dp = MmaTiles.Multiply(dp, RowKeep(p, bh, rowA, rowB, j0 + 2 * t));
            var ds = RowGrad(w, dp, deltaA, deltaB);
            if (math.ReadsWeightsFromShared)
            {
                Group.Barrier(); // every warp has read V: it now carries dS
                MmaTiles.StoreP(e, ds, vSm, warpRow, t);
                Group.Barrier();
            }
            dqAcc = math.Accumulate(dqAcc, ds, ktSm, vSm, warpRow, 0, g, t); // dQ += dS K
        }
        var dq32 = dq.Cast<uint>();
        if (rowA < p.T) MmaTiles.StoreRow<TE, TM>(math, dqAcc, dq32, ((long)bh * p.T + rowA) * RowPairs + t, p.Scale, upper: false);
        if (rowB < p.T) MmaTiles.StoreRow<TE, TM>(math, dqAcc, dq32, ((long)bh * p.T + rowB) * RowPairs + t, p.Scale, upper: true);
    }

    // ---- per-entry terms: dK/dV (columns are queries) ----

    /// <summary>P^T entries: exp2(s scale log2 e - lse_q log2 e) where key &lt; VisibleEnd(query) and query &lt; T, else 0.</summary>
    private static Frags8 ColumnWeights(Frags8 s, AttentionParams p, ArrayView<float> lse, int bh, int q0, int keyA, int keyB, float scaleLog2)
    {
        s.F0 = ColumnWeights(s.F0, p, lse, bh, q0, keyA, keyB, scaleLog2);
        s.F1 = ColumnWeights(s.F1, p, lse, bh, q0 + 8, keyA, keyB, scaleLog2);
        s.F2 = ColumnWeights(s.F2, p, lse, bh, q0 + 16, keyA, keyB, scaleLog2);
        s.F3 = ColumnWeights(s.F3, p, lse, bh, q0 + 24, keyA, keyB, scaleLog2);
        s.F4 = ColumnWeights(s.F4, p, lse, bh, q0 + 32, keyA, keyB, scaleLog2);
        s.F5 = ColumnWeights(s.F5, p, lse, bh, q0 + 40, keyA, keyB, scaleLog2);
        s.F6 = ColumnWeights(s.F6, p, lse, bh, q0 + 48, keyA, keyB, scaleLog2);
        s.F7 = ColumnWeights(s.F7, p, lse, bh, q0 + 56, keyA, keyB, scaleLog2);
        return s;
    }

    private static Frag ColumnWeights(Frag f, AttentionParams p, ArrayView<float> lse, int bh, int query, int keyA, int keyB, float scaleLog2)
    {
        f.C0 = Weight(f.C0, p, lse, bh, query, keyA, scaleLog2);
        f.C1 = Weight(f.C1, p, lse, bh, query + 1, keyA, scaleLog2);
        f.C2 = Weight(f.C2, p, lse, bh, query, keyB, scaleLog2);
        f.C3 = Weight(f.C3, p, lse, bh, query + 1, keyB, scaleLog2);
        return f;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Weight(float s, AttentionParams p, ArrayView<float> lse, int bh, int query, int key, float scaleLog2)
    {
        if (query >= p.T || key >= p.VisibleEnd(query)) return 0f;
        return XMath.Exp2(s * scaleLog2 - lse[(long)bh * p.T + query] * AttentionMmaKernels.Log2E);
    }

    private static Frags8 ColumnKeep(AttentionParams p, int bh, int q0, int keyA, int keyB)
    {
        Frags8 k;
        k.F0 = ColumnKeepFrag(p, bh, q0, keyA, keyB);
        k.F1 = ColumnKeepFrag(p, bh, q0 + 8, keyA, keyB);
        k.F2 = ColumnKeepFrag(p, bh, q0 + 16, keyA, keyB);
        k.F3 = ColumnKeepFrag(p, bh, q0 + 24, keyA, keyB);
        k.F4 = ColumnKeepFrag(p, bh, q0 + 32, keyA, keyB);
        k.F5 = ColumnKeepFrag(p, bh, q0 + 40, keyA, keyB);
        k.F6 = ColumnKeepFrag(p, bh, q0 + 48, keyA, keyB);
        k.F7 = ColumnKeepFrag(p, bh, q0 + 56, keyA, keyB);
        return k;
    }

    private static Frag ColumnKeepFrag(AttentionParams p, int bh, int query, int keyA, int keyB) => new()
    {
        C0 = p.Keep(bh, query, keyA),
        C1 = p.Keep(bh, query + 1, keyA),
        C2 = p.Keep(bh, query, keyB),
        C3 = p.Keep(bh, query + 1, keyB),
    };

    /// <summary>dS^T = P^T (dP^T - Di), Di per column (query).</summary>
    private static Frags8 ColumnGrad(Frags8 w, Frags8 dp, AttentionParams p, ArrayView<float> delta, int bh, int q0)
    {
        w.F0 = ColumnGrad(w.F0, dp.F0, p, delta, bh, q0);
        w.F1 = ColumnGrad(w.F1, dp.F1, p, delta, bh, q0 + 8);
        w.F2 = ColumnGrad(w.F2, dp.F2, p, delta, bh, q0 + 16);
        w.F3 = ColumnGrad(w.F3, dp.F3, p, delta, bh, q0 + 24);
        w.F4 = ColumnGrad(w.F4, dp.F4, p, delta, bh, q0 + 32);
        w.F5 = ColumnGrad(w.F5, dp.F5, p, delta, bh, q0 + 40);
        w.F6 = ColumnGrad(w.F6, dp.F6, p, delta, bh, q0 + 48);
        w.F7 = ColumnGrad(w.F7, dp.F7, p, delta, bh, q0 + 56);
        return w;
    }

    private static Frag ColumnGrad(Frag w, Frag dp, AttentionParams p, ArrayView<float> delta, int bh, int query)
    {
        float d0 = query < p.T ? delta[(long)bh * p.T + query] : 0f;
        float d1 = query + 1 < p.T ? delta[(long)bh * p.T + query + 1] : 0f;
        return new Frag { C0 = w.C0 * (dp.C0 - d0), C1 = w.C1 * (dp.C1 - d1), C2 = w.C2 * (dp.C2 - d0), C3 = w.C3 * (dp.C3 - d1) };
    }

    // ---- per-entry terms: dQ (rows are queries) ----

    private static Frags8 RowKeep(AttentionParams p, int bh, int rowA, int rowB, int key0)
    {
        Frags8 k;
        k.F0 = RowKeepFrag(p, bh, rowA, rowB, key0);
        k.F1 = RowKeepFrag(p, bh, rowA, rowB, key0 + 8);
        k.F2 = RowKeepFrag(p, bh, rowA, rowB, key0 + 16);
        k.F3 = RowKeepFrag(p, bh, rowA, rowB, key0 + 24);
        k.F4 = RowKeepFrag(p, bh, rowA, rowB, key0 + 32);
        k.F5 = RowKeepFrag(p, bh, rowA, rowB, key0 + 40);
        k.F6 = RowKeepFrag(p, bh, rowA, rowB, key0 + 48);
        k.F7 = RowKeepFrag(p, bh, rowA, rowB, key0 + 56);
        return k;
    }

    private static Frag RowKeepFrag(AttentionParams p, int bh, int rowA, int rowB, int key) => new()
    {
        C0 = p.Keep(bh, rowA, key),
        C1 = p.Keep(bh, rowA, key + 1),
        C2 = p.Keep(bh, rowB, key),
        C3 = p.Keep(bh, rowB, key + 1),
    };

    /// <summary>dS = P (dP - Di), Di per row (A: C0, C1; B: C2, C3).</summary>
    private static Frags8 RowGrad(Frags8 w, Frags8 dp, float deltaA, float deltaB)
    {
        w.F0 = RowGrad(w.F0, dp.F0, deltaA, deltaB); w.F1 = RowGrad(w.F1, dp.F1, deltaA, deltaB);
        w.F2 = RowGrad(w.F2, dp.F2, deltaA, deltaB); w.F3 = RowGrad(w.F3, dp.F3, deltaA, deltaB);
        w.F4 = RowGrad(w.F4, dp.F4, deltaA, deltaB); w.F5 = RowGrad(w.F5, dp.F5, deltaA, deltaB);
        w.F6 = RowGrad(w.F6, dp.F6, deltaA, deltaB); w.F7 = RowGrad(w.F7, dp.F7, deltaA, deltaB);
        return w;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Frag RowGrad(Frag w, Frag dp, float deltaA, float deltaB)
        => new() { C0 = w.C0 * (dp.C0 - deltaA), C1 = w.C1 * (dp.C1 - deltaA), C2 = w.C2 * (dp.C2 - deltaB), C3 = w.C3 * (dp.C3 - deltaB) };
}
