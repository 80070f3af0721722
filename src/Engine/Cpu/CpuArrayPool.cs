using System.Runtime.InteropServices;

namespace ManagedTensor.Cpu;

/// <summary>
/// A caching pool for the arrays of large CPU storages (op outputs, activations, gradients), the CPU's
/// counterpart of a GPU caching allocator. A training step allocates the same shapes every step; without a
/// pool each is a fresh array on the large-object heap, which only a full (gen 2) collection frees: at
/// nanoGPT's CPU shape that was 89 MB and one gen-2 collection per step, and at 6 layers x 384 a peak of
/// 2.5 GB of memory, mostly garbage waiting for the collector.
///
/// Arrays are kept by element type and exact length (a training step asks for the same lengths again and
/// again, so exact matches are the common case and a storage's array is never longer than the storage).
/// An array comes back to the pool in one of two ways:
///  - explicitly, when its storage is disposed (<see cref="Storage.Dispose"/>, e.g. a KV cache's);
///  - when the garbage collector finds its storage unreachable: the pool holds the array itself strongly
///    and the storage only weakly, so after a collection a dead storage's array is free again. The pool
///    asks for a collection itself when it would otherwise hand out a quarter more than was in use after
///    the last one (at least <see cref="CollectSlack"/> more), which bounds the memory held by garbage. A
///    collection costs little here (the arrays hold no references to trace), so it is cheaper to collect
///    often than to let dead activations pile up: with a doubling rule the small shape's peak resident
///    memory was 390 MB against 235 MB without the pool.
/// CPU kernels must therefore keep a tensor (not just its array) alive while they use its array: the CPU
/// backend keeps every input and output of an op alive until its kernel returns. Kernels read arrays through
/// the engine-internal accessors (<c>Elements</c>, <c>ElementSpan</c>); an array given out by the public
/// <see cref="CpuTensorExtensions.Data{T}"/> is marked escaped and never recycled when its storage dies
/// (user code may hold it past the tensor), only when the storage is disposed explicitly.
///
/// Why reachability decides, rather than a step scope (the trainer handing back everything a step allocated
/// once the optimizer is done): a scope must know which of its tensors outlive the step (the optimizer's
/// moments created on its first step, gradients kept for accumulation, a loss or logits the caller holds, a
/// tensor an autograd graph saved for a later backward) and a wrong guess corrupts them silently. The
/// collector already knows exactly that: a storage is reachable while any tensor, view sharing it, saved
/// tensor of an autograd node or user variable refers to it, and only then is its array in use. Views share
/// their base's storage object, so a view alone keeps the array. The price is the rule above, and that
/// garbage waits for a collection; the pool triggers one itself when what it hands out grows by a quarter.
/// </summary>
internal static class CpuArrayPool
{
    /// <summary>Smaller arrays are left to the garbage collector's nursery, which handles them well.</summary>
    public const int MinBytes = 32 * 1024;

    /// <summary>MT_CPU_POOL=0 turns the pool off (every array fresh from the collector), to measure what it saves.</summary>
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("MT_CPU_POOL") != "0";

    /// <summary>The least memory handed out beyond the live memory (or a quarter of it, if more) before the pool asks for a collection.</summary>
    public const long CollectSlack = 64L << 20;

    /// <summary>Free arrays kept beyond this many bytes (or the bytes in use, if more) go back to the collector.</summary>
    public const long FreeLimit = 256L << 20;

    private static readonly object Gate = new();
    private static readonly Dictionary<(Type Element, int Length), Stack<Array>> FreeArrays = [];
    private static readonly List<Slot> Slots = [];
    private static readonly Stack<int> FreeSlots = [];
    private static long _inUseBytes, _freeBytes, _collectAt = CollectSlack;
    private static int _gcCountAtScan = -1;

    /// <summary>An array handed out: the array, its size, and a weak handle to the storage that owns it.</summary>
    private struct Slot
    {
        public Array? Array;
        public long Bytes;
        public GCHandle Owner;
        public bool Escaped;
    }

    /// <summary>What the pool holds, for tests and the benchmark: bytes handed out and bytes kept free.</summary>
    public static (long InUse, long Free) Statistics
    {
        get { lock (Gate) return (_inUseBytes, _freeBytes); }
    }

    /// <summary>
    /// An array of <paramref name="length"/> elements for <paramref name="owner"/> (zeroed when asked), reused when
    /// one of that type and length is free; <paramref name="slot"/> identifies it for <see cref="Return"/>.
    /// </summary>
    public static Array Rent(Type element, int length, long bytes, bool zero, Storage owner, Func<Array> allocate, out int slot)
    {
        Array? array = null;
        lock (Gate)
        {
            array = TakeFree(element, length, bytes);
            if (array is null && ReclaimDead() > 0) array = TakeFree(element, length, bytes);
            if (array is null && _inUseBytes + bytes > _collectAt)
            {
                // Everything dead since the last collection is garbage the pool cannot see yet: collect it,
                // then set the next threshold from what is really alive.
                GC.Collect();
                ReclaimDead();
                array = TakeFree(element, length, bytes);
                _collectAt = _inUseBytes + Math.Max(_inUseBytes / 4, CollectSlack);
            }
            slot = FreeSlots.Count > 0 ? FreeSlots.Pop() : AddSlot();
            _inUseBytes += bytes;
            var s = CollectionsMarshal.AsSpan(Slots);
            s[slot].Bytes = bytes;
            s[slot].Owner = GCHandle.Alloc(owner, GCHandleType.Weak);
            if (array is not null)
            {
                s[slot].Array = array;
                if (zero) Array.Clear(array);
                return array;
            }
        }
        array = allocate(); // outside the lock: zeroing a large new array takes a while
        lock (Gate) CollectionsMarshal.AsSpan(Slots)[slot].Array = array;
        return array;
    }

    /// <summary>
    /// Marks the array of <paramref name="slot"/> as handed to code outside the engine (<see cref="CpuTensorExtensions.Data{T}"/>):
    /// such code may keep the array after its last reference to the tensor, so when the storage dies the array goes to
    /// the garbage collector, never to another tensor. Only an explicit dispose returns it to the pool.
    /// </summary>
    public static void MarkEscaped(int slot)
    {
        lock (Gate) CollectionsMarshal.AsSpan(Slots)[slot].Escaped = true;
    }

    /// <summary>Lets the collector have every free array (tests start from an empty free list with this).</summary>
    internal static void DropFreeArrays()
    {
        lock (Gate)
        {
            FreeArrays.Clear();
            _freeBytes = 0;
        }
    }

    /// <summary>Gives the array of <paramref name="slot"/> back (its storage was disposed); it may be handed out again at once.</summary>
    public static void Return(int slot)
    {
        lock (Gate) Release(slot);
    }

    private static int AddSlot()
    {
        Slots.Add(default);
        return Slots.Count - 1;
    }

    private static Array? TakeFree(Type element, int length, long bytes)
    {
        if (!FreeArrays.TryGetValue((element, length), out var stack) || stack.Count == 0) return null;
        _freeBytes -= bytes;
        return stack.Pop();
    }

    private static void Release(int slot)
    {
        ref var s = ref CollectionsMarshal.AsSpan(Slots)[slot];
        if (s.Array is null) return;
        var array = s.Array;
        _inUseBytes -= s.Bytes;
        if (_freeBytes + s.Bytes <= Math.Max(FreeLimit, _inUseBytes))
        {
            var key = (array.GetType().GetElementType()!, array.Length);
            if (!FreeArrays.TryGetValue(key, out var stack)) FreeArrays[key] = stack = new Stack<Array>();
            stack.Push(array);
            _freeBytes += s.Bytes;
        }
        s.Owner.Free();
        s = default;
        FreeSlots.Push(slot);
    }

    /// <summary>Drops a dead storage's escaped array: the collector frees it once the code holding it lets go.</summary>
    private static void Forget(int slot)
    {
        ref var s = ref CollectionsMarshal.AsSpan(Slots)[slot];
        _inUseBytes -= s.Bytes;
        s.Owner.Free();
        s = default;
        FreeSlots.Push(slot);
    }

    /// <summary>Frees the arrays of storages the collector found dead (only after a collection has run since the last look).</summary>
    private static int ReclaimDead()
    {
        int gcs = GC.CollectionCount(0);
        if (gcs == _gcCountAtScan) return 0;
        _gcCountAtScan = gcs;
        int reclaimed = 0;
        var slots = CollectionsMarshal.AsSpan(Slots);
        for (int i = 0; i < slots.Length; i++)
        {
            if (slots[i].Array is not null && slots[i].Owner.Target is null)
            {
                if (slots[i].Escaped) Forget(i);
                else
                {
                    Release(i);
                    reclaimed++;
                }
            }
        }
        return reclaimed;
    }
}
