using System.Runtime.CompilerServices;
using ILGPU.Runtime;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>Kernels are compiled on first use and cached per accelerator, keyed by a name such as "sgemm5_NT".</summary>
internal static class GemmKernelCache
{
    private static readonly ConditionalWeakTable<Accelerator, Dictionary<string, Delegate>> Tables = new();

    public static T Get<T>(Accelerator accelerator, string name, Func<Accelerator, T> load) where T : Delegate
    {
        var table = Tables.GetValue(accelerator, _ => new Dictionary<string, Delegate>());
        lock (table)
        {
            if (!table.TryGetValue(name, out var kernel)) table[name] = kernel = load(accelerator);
            return (T)kernel;
        }
    }
}
