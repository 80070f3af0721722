using System.Runtime.CompilerServices;

namespace ManagedTensor.Gpu.Kernels.Attention;

/// <summary>
/// Everything an attention kernel needs besides its buffers, passed by value. Layout as the op:
/// q, out (B, H, T, D), k, v (B, Hkv, S, D), lse (B, H, T), all contiguous, except that k and v may be
/// strided views for the kernels that read them through <see cref="KvRow"/> (the decode kernel: a KV
/// cache's first S positions in place). Flat head bh = b H + h; its kv head is b Hkv + h / (H / Hkv).
/// </summary>
public readonly struct AttentionParams
{
    public readonly int B, H, Hkv, T, S, D;
    public readonly int Causal;           // 1: query i sees keys j <= i + S - T
    public readonly float Scale;          // multiplies q k^T
    public readonly int Dropout;          // 1: dropout on the weights
    public readonly uint KeepThreshold;   // keep when (Philox word >> 8) >= this (AttentionAttrs.KeepThreshold)
    public readonly float KeepScale;      // 1 / (1 - p)
    public readonly ulong Seed, Offset;
    public readonly long KvBatchStride, KvHeadStride, KvRowStride; // k and v's strides in elements (last axis: 1)

    /// <param name="kvStrides">k and v's strides (B, Hkv, S axes); null: dense (Hkv S D, S D, D)</param>
    public AttentionParams(int b, int h, int hkv, int t, int s, int d, AttentionAttrs a, (long Batch, long Head, long Row)? kvStrides = null)
    {
        B = b; H = h; Hkv = hkv; T = t; S = s; D = d;
        (KvBatchStride, KvHeadStride, KvRowStride) = kvStrides ?? ((long)hkv * s * d, (long)s * d, d);
        Causal = a.Causal ? 1 : 0;
        Scale = (float)a.Scale;
        Dropout = a.DropoutP > 0 ? 1 : 0;
        KeepThreshold = a.KeepThreshold;
        KeepScale = (float)a.KeepScale;
        Seed = a.Seed;
        Offset = a.Offset;
    }

    /// <summary>Whether k and v are dense (B, Hkv, S, D): every kernel but decode's reads them only so.</summary>
    public bool KvDense => KvRowStride == D && KvHeadStride == (long)S * D && KvBatchStride == (long)Hkv * S * D;

    /// <summary>Flat kv head (b Hkv + kv head) of flat query head bh.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int KvHead(int bh) => bh / H * Hkv + bh % H / (H / Hkv);

    /// <summary>Where key (and value) j of flat kv head kvHead (b Hkv + kv head) starts in k (and v).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long KvRow(int kvHead, int j) => kvHead / Hkv * KvBatchStride + kvHead % Hkv * KvHeadStride + j * KvRowStride;

    /// <summary>Query row i sees keys [0, VisibleEnd(i)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int VisibleEnd(int i)
    {
        if (Causal == 0) return S;
        int e = i + S - T + 1;
        return e < 0 ? 0 : e > S ? S : e;
    }

    /// <summary>The first query row that sees key j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int FirstRowSeeing(int j)
    {
        if (Causal == 0) return 0;
        int r = j - (S - T);
        return r < 0 ? 0 : r;
    }

    /// <summary>The dropout multiplier of entry (flat head bh, query i, key j): 0 or 1 / (1 - p).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Keep(int bh, int i, int j)
    {
        ulong index = Offset + ((ulong)bh * (ulong)T + (ulong)i) * (ulong)S + (ulong)j;
        return (PhiloxWord(Seed, index) >> 8) >= KeepThreshold ? KeepScale : 0f;
    }

    /// <summary><see cref="Philox.Word"/> written with plain locals (no tuples), for kernels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint PhiloxWord(ulong seed, ulong index)
    {
        ulong block = index >> 2;
        uint c0 = (uint)block, c1 = (uint)(block >> 32), c2 = 0, c3 = 0;
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = 0xD2511F53UL * c0, p1 = 0xCD9E8D57UL * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint)p1; c3 = (uint)p0; c0 = n0; c2 = n2;
            k0 += 0x9E3779B9; k1 += 0xBB67AE85;
        }
        int w = (int)(index & 3);
        return w == 0 ? c0 : w == 1 ? c1 : w == 2 ? c2 : c3;
    }
}
