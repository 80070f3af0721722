namespace ManagedTensor.Cpu;

/// <summary>TODO: strided copy with dtype conversion, fill, counter-based random.</summary>
internal static class CpuCopy
{
    public static void Copy(Tensor src, Tensor dst) => throw new NotImplementedException();
    public static void Fill(Tensor dst, double value) => throw new NotImplementedException();
    public static void RandUniform(Tensor dst, RandomAttrs a) => throw new NotImplementedException();
    public static void RandNormal(Tensor dst, RandomAttrs a) => throw new NotImplementedException();
}
