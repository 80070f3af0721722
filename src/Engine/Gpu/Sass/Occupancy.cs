namespace ManagedTensor.Gpu.Sass;

/// <summary>
/// What one streaming multiprocessor of an architecture holds at once (CUDA C Programming Guide,
/// "Compute Capabilities" table): threads, blocks, 32-bit registers and shared memory, with the
/// allocation granularities the occupancy calculator uses.
/// </summary>
public sealed record SmLimits(string Arch, int MaxThreads, int MaxBlocks, int Registers, int SharedBytes, int MaxSharedPerBlock)
{
    /// <summary>Ada (sm_89: RTX 40x0, L4, L40): 1536 threads, 24 blocks, 64 K registers, 100 KB shared (99 KB per block).</summary>
    public static readonly SmLimits Sm89 = new("sm_89", 1536, 24, 65536, 100 * 1024, 99 * 1024);

    /// <summary>Hopper (sm_90: H100, H200): 2048 threads, 32 blocks, 64 K registers, 228 KB shared (227 KB per block).</summary>
    public static readonly SmLimits Sm90 = new("sm_90", 2048, 32, 65536, 228 * 1024, 227 * 1024);

    public static SmLimits For(string arch) => arch.StartsWith("sm_90", StringComparison.Ordinal) ? Sm90 : Sm89;

    /// <summary>Warps the SM can keep resident: its thread limit / 32.</summary>
    public int MaxWarps => MaxThreads / 32;
}

/// <summary>
/// Theoretical occupancy: how many blocks of a kernel fit on one SM at once, and what fraction of the
/// SM's warp slots they fill. Registers are allocated per warp in units of 256 (a thread's count rounded
/// up to a multiple of 8); shared memory per block in units of 128 bytes plus 1 KB the driver reserves
/// per block (sm_80 and later).
/// </summary>
public readonly record struct Occupancy(int BlocksPerSm, int WarpsPerSm, double Fraction, string Limiter)
{
    public static Occupancy Of(SmLimits sm, int threadsPerBlock, int registersPerThread, int sharedBytesPerBlock)
    {
        int warps = (threadsPerBlock + 31) / 32;
        int byThreads = sm.MaxWarps / warps;
        int regsPerWarp = RoundUp(RoundUp(Math.Max(registersPerThread, 1), 8) * 32, 256);
        int byRegisters = sm.Registers / regsPerWarp / warps;
        int smem = RoundUp(sharedBytesPerBlock + 1024, 128);
        int bySmem = sharedBytesPerBlock > sm.MaxSharedPerBlock ? 0 : sm.SharedBytes / smem;
        int blocks = Math.Min(Math.Min(byThreads, byRegisters), Math.Min(bySmem, sm.MaxBlocks));
        string limiter = blocks == bySmem ? "smem" : blocks == byRegisters ? "registers" : blocks == byThreads ? "threads" : "blocks";
        return new Occupancy(blocks, blocks * warps, (double)(blocks * warps) / sm.MaxWarps, limiter);
    }

    private static int RoundUp(int x, int unit) => (x + unit - 1) / unit * unit;
}
