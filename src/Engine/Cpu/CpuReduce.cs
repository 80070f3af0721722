namespace ManagedTensor.Cpu;

/// <summary>TODO: reductions.</summary>
internal static class CpuReduce
{
    public static void Reduce(Op op, Tensor x, Tensor y, ReduceAttrs a) => throw new NotImplementedException();
}
