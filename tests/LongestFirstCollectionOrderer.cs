using ManagedTensor.Tests.Attention;
using ManagedTensor.Tests.Gpu;
using ManagedTensor.Tests.Gpu.Gemm;
using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestCollectionOrderer(
    "ManagedTensor.Tests.LongestFirstCollectionOrderer", "ManagedTensor.Tests")]

namespace ManagedTensor.Tests;

/// <summary>
/// Starts the longest test collections first, so that none of them is the run's tail.
/// </summary>
/// <remarks>
/// xunit 2.9 runs at most <c>maxParallelThreads</c> collections at a time (CI's two cores: two), each
/// one from its first test to its last, and starts them in the order this orderer gives (its default is
/// the hash of each collection's id, which is arbitrary). A collection is one thread's work however many
/// cores are idle, so scheduling longest-first (the classic LPT rule) matters: in CI's run of d606b9e the
/// "ilgpu-cpu backend" collection (its classes share one allocator, so they run one after another, about
/// 420 s) happened to start at 324 s, and the run's last 5 minutes had one core idle. Started first, it
/// runs beside everything else.
/// The seconds below are those of that run (TRX durations on the 2-core CI machine); only their order
/// matters, and a collection left out just keeps xunit's default place after these.
/// </remarks>
public sealed class LongestFirstCollectionOrderer : ITestCollectionOrderer
{
    private static readonly string[] Longest =
    [
        IlgpuCpuCollection.Name,                       // ~420 s: MeasuredPeakTests alone is 211 s
        CollectionOf(typeof(PtxKernelTests)),          // 276 s of ptxas
        CollectionOf(typeof(HgemmTests)),              // 75 s
        CollectionOf(typeof(AttentionGpuTests)),       // 69 s
        CollectionOf(typeof(MmaFragmentTests)),        // 57 s
        CollectionOf(typeof(KernelBudgetTests)),       // 49 s
    ];

    /// <summary>
    /// The collection xunit puts a test class in: the one its [Collection] names, else one of its own.
    /// </summary>
    private static string CollectionOf(Type testClass) =>
        testClass.GetCustomAttributesData()
            .FirstOrDefault(a => a.AttributeType == typeof(CollectionAttribute))?
            .ConstructorArguments[0].Value as string
        ?? "Test collection for " + testClass.FullName;

    public IEnumerable<ITestCollection> OrderTestCollections(IEnumerable<ITestCollection> testCollections)
    {
        var defaultOrder = new DefaultTestCollectionOrderer().OrderTestCollections(testCollections).ToList();
        int Rank(ITestCollection c)
        {
            int i = Array.IndexOf(Longest, c.DisplayName);
            return i < 0 ? Longest.Length : i;
        }
        return defaultOrder.OrderBy(Rank);   // a stable sort: the rest keep xunit's order
    }
}
