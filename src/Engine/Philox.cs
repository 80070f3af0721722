using System.Runtime.CompilerServices;

namespace ManagedTensor;

/// <summary>
/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
/// counter-based generator. Output block c under key k is a pure function of (c, k), so element i of a
/// random tensor is the same on every backend and every thread count. One block gives 4 uint32s;
/// element i uses word (i mod 4) of block i / 4.
/// </summary>
public static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57; // round multipliers
    private const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85; // Weyl key increments

    /// <summary>The 32-bit word <paramref name="index"/> of the stream with key <paramref name="seed"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Word(ulong seed, ulong index)
    {
        var (c0, c1, c2, c3) = Block(seed, index >> 2);
        return (int)(index & 3) switch { 0 => c0, 1 => c1, 2 => c2, _ => c3 };
    }

    /// <summary>The four words 4 block .. 4 block + 3 at once (what Word computes and keeps one of).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint, uint, uint, uint) Block(ulong seed, ulong block)
    {
        uint c0 = (uint)block, c1 = (uint)(block >> 32), c2 = 0, c3 = 0;
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int round = 0; round < 10; round++)
        {
            // (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0))
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint)p1; c3 = (uint)p0; c0 = n0; c2 = n2;
            k0 += W0; k1 += W1;
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>Uniform in [0, 1) with 24 random bits (exact in float32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Uniform(ulong seed, ulong index) => ToUniform(Word(seed, index));

    /// <summary>A word's top 24 bits as a float in [0, 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToUniform(uint word) => (word >> 8) * (1.0f / 16777216.0f);

    /// <summary>Standard normal by Box-Muller over the uniform pair (2i, 2i+1) of the stream.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Normal(ulong seed, ulong index) => ToNormal(Word(seed, 2 * index), Word(seed, 2 * index + 1));

    /// <summary>Box-Muller of two words: sqrt(-2 ln u1) cos(2 pi u2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToNormal(uint word1, uint word2)
    {
        float u1 = ((word1 >> 8) + 1) * (1.0f / 16777216.0f); // (0, 1]: log is finite
        float u2 = (word2 >> 8) * (1.0f / 16777216.0f);
        return MathF.Sqrt(-2.0f * MathF.Log(u1)) * MathF.Cos(2.0f * MathF.PI * u2);
    }
}

/// <summary>
/// A seeded source of random tensors: a key (the seed) and a running counter. Each draw of n numbers
/// uses counters [Offset, Offset + n) and advances Offset, so (Seed, Offset) is the whole state to save
/// and restore for exact resumption.
/// </summary>
public sealed class Generator
{
    public Generator(ulong seed, ulong offset = 0)
    {
        Seed = seed;
        Offset = offset;
    }

    public ulong Seed { get; }
    public ulong Offset { get; set; }

    /// <summary>Reserves <paramref name="count"/> counters and returns the first.</summary>
    public ulong Take(long count)
    {
        ulong start = Offset;
        Offset += (ulong)count;
        return start;
    }

    /// <summary>A uniform integer in [0, n) (for sampling batches and tokens on the host).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "must be positive");
        ulong idx = Take(2);
        ulong r = ((ulong)Philox.Word(Seed, idx) << 32) | Philox.Word(Seed, idx + 1);
        return (int)(r % (ulong)n);
    }

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble()
    {
        ulong idx = Take(2);
        ulong r = ((ulong)Philox.Word(Seed, idx) << 32) | Philox.Word(Seed, idx + 1);
        return (r >> 11) * (1.0 / (1UL << 53));
    }
}
