namespace ManagedTensor.Cpu;

/// <summary>TODO: index select/add, gather/scatter-add.</summary>
internal static class CpuIndex
{
    public static void IndexSelect(Tensor x, Tensor idx, Tensor y, int axis) => throw new NotImplementedException();
    public static void IndexAdd(Tensor dst, Tensor idx, Tensor src, int axis) => throw new NotImplementedException();
    public static void Gather(Tensor x, Tensor idx, Tensor y, int axis) => throw new NotImplementedException();
    public static void ScatterAdd(Tensor dst, Tensor idx, Tensor src, int axis) => throw new NotImplementedException();
}
