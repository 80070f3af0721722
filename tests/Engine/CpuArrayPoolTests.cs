using System.Runtime.CompilerServices;
using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// The CPU array pool hands an array to a new storage only when its last owner is disposed or unreachable:
/// never while a tensor, or a view sharing its storage, is alive. Each test uses its own length, so tests
/// running in parallel never compete for the same free arrays.
/// </summary>
[Collection(CpuArrayPoolCollection.Name)]
public class CpuArrayPoolTests
{
    /// <summary>
    /// Each test starts from an empty free list: other tests' free arrays count against the pool's limit on free bytes,
    /// past which a returned array goes to the collector instead of the free list (what these tests look for).
    /// </summary>
    public CpuArrayPoolTests() => CpuArrayPool.DropFreeArrays();

    [Fact]
    public void DisposedStorageArrayIsReusedAndZeroedWhenAsked()
    {
        if (!CpuArrayPool.Enabled) return; // MT_CPU_POOL=0: nothing is pooled
        const int n = 40_001;
        var a = Tensor.Full([n], 3.0);
        var array = a.Data<float>();
        a.Dispose();
        var b = Tensor.Zeros([n]);
        Assert.Same(array, b.Data<float>());
        Assert.All(b.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void LiveStoragesNeverShareAnArray()
    {
        if (!CpuArrayPool.Enabled) return;
        const int n = 40_003;
        var live = new List<Tensor>();
        for (int i = 0; i < 8; i++)
        {
            live.Add(Tensor.Full([n], i));
            Allocate(n); // garbage of the same length, for the pool to find after the collection
            GC.Collect();
        }
        Assert.Equal(live.Count, live.Select(t => t.Data<float>()).Distinct().Count());
        for (int i = 0; i < live.Count; i++) Assert.All(live[i].ToArray<float>(), v => Assert.Equal(i, v));
    }

    [Fact]
    public void ViewKeepsItsBaseArray()
    {
        if (!CpuArrayPool.Enabled) return;
        const int n = 40_005;
        var view = SliceOfFull(n, 7.0); // the base tensor is unreachable, its storage is not
        GC.Collect();
        var others = Enumerable.Range(0, 4).Select(_ => Tensor.Full([n], -1.0)).ToList();
        Assert.DoesNotContain(others, o => ReferenceEquals(o.Data<float>(), view.Data<float>()));
        Assert.All(view.ToArray<float>(), v => Assert.Equal(7f, v));
    }

    [Fact]
    public void UnreachableStorageArrayComesBackAfterACollection()
    {
        if (!CpuArrayPool.Enabled) return;
        const int n = 40_007;
        var weak = AllocateAndDrop(n, out var array);
        GC.Collect();
        Assert.False(weak.TryGetTarget(out _));
        var b = Tensor.Empty([n]);
        Assert.Same(array, b.Data<float>());
    }

    /// <summary>
    /// An array that left the engine through the public Data accessor may be held by its caller after the tensor is
    /// gone (`var a = x.Softmax().Data&lt;float&gt;()`): the pool must never give it to another tensor.
    /// </summary>
    [Fact]
    public void ArrayFromDataIsNeverRecycledWhenItsTensorDies()
    {
        if (!CpuArrayPool.Enabled) return;
        const int n = 40_009;
        var held = FullArrayOfDroppedTensor(n, 5f);
        for (int i = 0; i < 4; i++)
        {
            GC.Collect();
            var other = Tensor.Full([n], -1.0);
            Assert.NotSame(held, other.Elements<float>());
        }
        Assert.All(held, v => Assert.Equal(5f, v));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Allocate(int n) => Tensor.Empty([n]);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Tensor SliceOfFull(int n, double value) => Tensor.Full([n], value).Slice(0, 1, n - 1);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference<Storage> AllocateAndDrop(int n, out float[] array)
    {
        var t = Tensor.Empty([n]);
        array = t.Elements<float>(); // as a kernel reads it: not escaped
        return new WeakReference<Storage>(t.Storage);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float[] FullArrayOfDroppedTensor(int n, float value) => Tensor.Full([n], value).Data<float>();
}

/// <summary>The pool is process-wide: its tests run alone, so no other test's allocations take or crowd out their arrays.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CpuArrayPoolCollection
{
    public const string Name = "cpu array pool (not parallel)";
}
