namespace ManagedTensor;

/// <summary>What a block of device memory holds, for the allocator's statistics.</summary>
public enum MemoryCategory
{
    Weights,
    Grads,
    OptimizerState,
    /// <summary>Forward and backward intermediates: the default for anything allocated outside a category scope.</summary>
    Activations,
    /// <summary>Scratch a kernel needs only while it runs (reduction partials, gathered operands).</summary>
    Workspace,
}

/// <summary>
/// A snapshot of a device allocator. Bytes are the allocator's block sizes (requests rounded up to
/// size classes). <see cref="DeviceAllocations"/> counts blocks obtained from the driver: after a
/// training loop's first step it should stop growing, since every later request is served from the cache.
/// </summary>
public sealed record MemoryStats(
    long LiveBytes,
    long PeakBytes,
    long CachedBytes,
    long DeviceAllocations,
    long CacheHits,
    IReadOnlyDictionary<MemoryCategory, long> LiveByCategory,
    IReadOnlyDictionary<MemoryCategory, long> PeakByCategory)
{
    /// <summary>Bytes held from the driver: live plus cached.</summary>
    public long ReservedBytes => LiveBytes + CachedBytes;

    /// <summary>The peak and its parts, as the training commands print it: "1.2 MiB (Weights 512 KiB, Activations ...)".</summary>
    public string DescribePeak() => $"{Gpu.GpuAllocator.Format(PeakBytes)} (" +
        string.Join(", ", PeakByCategory.Select(kv => $"{kv.Key} {Gpu.GpuAllocator.Format(kv.Value)}")) + ")";
}

/// <summary>A backend whose storages live in device memory managed by a caching allocator.</summary>
public interface IDeviceMemory
{
    MemoryStats Stats { get; }

    /// <summary>Sets every peak (total and per category) to the current live value.</summary>
    void ResetPeak();

    /// <summary>Returns every cached (free) block to the driver.</summary>
    void EmptyCache();

    /// <summary>Waits for every queued kernel and copy.</summary>
    void Synchronize();
}

/// <summary>
/// Device-memory controls that work for any device (they do nothing for the CPU, whose storages are
/// managed arrays): the category new storages are counted under, scopes that free what was allocated
/// inside them, and the statistics of a device's allocator.
/// </summary>
public static class DeviceMemory
{
    [ThreadStatic] private static MemoryCategory? _category;
    [ThreadStatic] private static MemoryScope? _scope;

    /// <summary>The category storages allocated on this thread are counted under.</summary>
    public static MemoryCategory CurrentCategory => _category ?? MemoryCategory.Activations;

    /// <summary>Counts storages allocated on this thread under <paramref name="category"/> until disposed (nestable).</summary>
    public static IDisposable Category(MemoryCategory category)
    {
        var previous = _category;
        _category = category;
        return new Restore(() => _category = previous);
    }

    /// <summary>
    /// Starts a scope: every device storage allocated on this thread until the scope is disposed is
    /// disposed with it (its memory goes back to the allocator's cache at once), except tensors passed
    /// to <see cref="MemoryScope.Keep"/>. Scopes nest; a kept tensor moves to the enclosing scope.
    /// </summary>
    public static MemoryScope Scope() => new();

    /// <summary>
    /// Until disposed, storages allocated on this thread belong to no scope: for what outlives the call that makes
    /// it (a table cached on first use, such as RoPE's cos and sin, made inside a caller's scope).
    /// </summary>
    public static IDisposable Unscoped()
    {
        var previous = _scope;
        _scope = null;
        return new Restore(() => _scope = previous);
    }

    /// <summary>Statistics of <paramref name="device"/>'s allocator, or null for the CPU.</summary>
    public static MemoryStats? Stats(Device device) => device.Kind == DeviceKind.Cpu ? null : (Backends.For(device) as IDeviceMemory)?.Stats;

    /// <summary>Recounts <paramref name="tensor"/>'s storage under <paramref name="category"/> (weights loaded before a scope was set, say).</summary>
    /// <summary>"1.5 GiB", "12 KiB": byte counts as the allocator's messages print them.</summary>
    public static string FormatBytes(long bytes) => Gpu.GpuAllocator.Format(bytes);

    /// <summary>The bytes a request of <paramref name="bytes"/> counts in the statistics: its block size class.</summary>
    public static long BlockBytes(long bytes) => Gpu.GpuAllocator.SizeClass(bytes);

    public static void Tag(Tensor tensor, MemoryCategory category)
    {
        if (tensor.Storage is Gpu.GpuStorage s) s.Category = category;
    }

    internal static MemoryScope? CurrentScope => _scope;

    internal static void Track(Storage storage) => _scope?.Add(storage);

    internal static void Enter(MemoryScope scope)
    {
        scope.Parent = _scope;
        _scope = scope;
    }

    internal static void Leave(MemoryScope scope)
    {
        if (!ReferenceEquals(_scope, scope))
            throw new InvalidOperationException("memory scopes must be disposed in reverse order of creation, on the thread that created them");
        _scope = scope.Parent;
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        private Action? _undo = undo;

        public void Dispose()
        {
            _undo?.Invoke();
            _undo = null;
        }
    }
}

/// <summary>Device storages allocated while the scope is current; disposed with it unless kept. See <see cref="DeviceMemory.Scope"/>.</summary>
public sealed class MemoryScope : IDisposable
{
    private readonly HashSet<Storage> _owned = new(ReferenceEqualityComparer.Instance);
    private bool _disposed;

    internal MemoryScope() => DeviceMemory.Enter(this);

    internal MemoryScope? Parent { get; set; }

    /// <summary>Storages this scope will dispose.</summary>
    public int Count => _owned.Count;

    internal void Add(Storage storage) => _owned.Add(storage);

    /// <summary>Keeps <paramref name="tensor"/>'s storage alive past this scope (it moves to the enclosing scope, if any).</summary>
    public Tensor Keep(Tensor tensor)
    {
        if (_owned.Remove(tensor.Storage)) Parent?.Add(tensor.Storage);
        return tensor;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DeviceMemory.Leave(this);
        foreach (var s in _owned) s.Dispose();
        _owned.Clear();
    }
}
