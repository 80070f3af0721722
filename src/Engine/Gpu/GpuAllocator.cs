using ILGPU;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu;

/// <summary>One block of device memory: a driver allocation of a size class, live or cached.</summary>
internal sealed class GpuBlock(MemoryBuffer1D<byte, Stride1D.Dense> buffer, long bytes)
{
    public MemoryBuffer1D<byte, Stride1D.Dense> Buffer { get; } = buffer;

    /// <summary>The block's size class in bytes (at least the request).</summary>
    public long Bytes { get; } = bytes;

    public MemoryCategory Category { get; set; }

    public ArrayView<byte> View => Buffer.View;
}

/// <summary>
/// A caching device allocator (the idea of PyTorch's CUDACachingAllocator, without block splitting).
/// Requests are rounded up to a size class: powers of two from 512 B to 1 MiB, then multiples of
/// 2 MiB. A freed block goes onto its class's free list; the next request of that class takes it
/// back without a driver call. A training step repeats the same requests, so after the first step
/// every request is a cache hit and <see cref="MemoryStats.DeviceAllocations"/> stops growing.
/// All kernels and copies run on one stream, in order, so a block freed while a queued kernel still
/// reads it can be handed out again at once: the next user's kernels run after that kernel.
/// Thread-safe (storages may be finalized on the GC's thread).
/// </summary>
internal sealed class GpuAllocator(Accelerator accelerator) : IDisposable
{
    private const long MinBlock = 512;
    private const long SmallLimit = 1 << 20;
    private const long LargeGranule = 2 << 20;

    private readonly object _gate = new();
    private readonly Dictionary<long, Stack<GpuBlock>> _free = new();
    // Live blocks are referenced here too, so a storage finalized by the GC still finds its buffer undisposed.
    private readonly HashSet<GpuBlock> _liveBlocks = new(ReferenceEqualityComparer.Instance);
    private readonly long[] _liveByCategory = new long[Enum.GetValues<MemoryCategory>().Length];
    private readonly long[] _peakByCategory = new long[Enum.GetValues<MemoryCategory>().Length];
    private long _liveBytes, _peak, _cached, _deviceAllocations, _cacheHits;
    private bool _disposed;

    public static long SizeClass(long bytes)
    {
        if (bytes <= MinBlock) return MinBlock;
        if (bytes <= SmallLimit) return 1L << (int)(64 - long.LeadingZeroCount(bytes - 1));
        return (bytes + LargeGranule - 1) / LargeGranule * LargeGranule;
    }

    public GpuBlock Allocate(long bytes, MemoryCategory category)
    {
        long size = SizeClass(bytes);
        GpuBlock? block = null;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
            {
                block = stack.Pop();
                _cached -= size;
                _cacheHits++;
            }
        }
        block ??= Fresh(size);
        block.Category = category;
        lock (_gate)
        {
            _liveBlocks.Add(block);
            AddLive(block, size);
        }
        return block;
    }

    /// <summary>A new block from the driver; on failure the cache is emptied and the request retried once.</summary>
    private GpuBlock Fresh(long size)
    {
        MemoryBuffer1D<byte, Stride1D.Dense> buffer;
        try
        {
            buffer = accelerator.Allocate1D<byte>(size);
        }
        catch (Exception first) when (first is not ObjectDisposedException)
        {
            EmptyCache();
            try
            {
                buffer = accelerator.Allocate1D<byte>(size);
            }
            catch (Exception e)
            {
                var s = Stats();
                throw new OutOfMemoryException(
                    $"{accelerator.Name}: cannot allocate {Format(size)} of device memory ({Format(s.LiveBytes)} live, peak {Format(s.PeakBytes)}): {e.Message}", e);
            }
        }
        lock (_gate) _deviceAllocations++;
        return new GpuBlock(buffer, size);
    }

    public void Free(GpuBlock block)
    {
        lock (_gate)
        {
            if (_disposed || !_liveBlocks.Remove(block)) return;
            AddLive(block, -block.Bytes);
            if (!_free.TryGetValue(block.Bytes, out var stack)) _free[block.Bytes] = stack = new Stack<GpuBlock>();
            stack.Push(block);
            _cached += block.Bytes;
        }
    }

    /// <summary>Moves a live block's bytes from its category to <paramref name="category"/>.</summary>
    public void Recategorize(GpuBlock block, MemoryCategory category)
    {
        lock (_gate)
        {
            if (!_liveBlocks.Contains(block)) return;
            AddLive(block, -block.Bytes);
            block.Category = category;
            AddLive(block, block.Bytes);
        }
    }

    private void AddLive(GpuBlock block, long delta)
    {
        _liveBytes += delta;
        _peak = Math.Max(_peak, _liveBytes);
        int c = (int)block.Category;
        _liveByCategory[c] += delta;
        _peakByCategory[c] = Math.Max(_peakByCategory[c], _liveByCategory[c]);
    }

    public MemoryStats Stats()
    {
        lock (_gate)
        {
            var live = new Dictionary<MemoryCategory, long>();
            var peak = new Dictionary<MemoryCategory, long>();
            foreach (var c in Enum.GetValues<MemoryCategory>())
            {
                live[c] = _liveByCategory[(int)c];
                peak[c] = _peakByCategory[(int)c];
            }
            return new MemoryStats(_liveBytes, _peak, _cached, _deviceAllocations, _cacheHits, live, peak);
        }
    }

    public void ResetPeak()
    {
        lock (_gate)
        {
            _peak = _liveBytes;
            Array.Copy(_liveByCategory, _peakByCategory, _liveByCategory.Length);
        }
    }

    public void EmptyCache()
    {
        List<GpuBlock> blocks;
        lock (_gate)
        {
            blocks = _free.Values.SelectMany(s => s).ToList();
            _free.Clear();
            _cached = 0;
        }
        accelerator.Synchronize(); // a queued kernel may still read a cached block
        foreach (var b in blocks) b.Buffer.Dispose();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        foreach (var b in _free.Values.SelectMany(s => s).Concat(_liveBlocks)) b.Buffer.Dispose();
        _free.Clear();
        _liveBlocks.Clear();
    }

    public static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:F1} KiB",
        _ => $"{bytes} B",
    };
}
