namespace ManagedTensor.Cpu;

/// <summary>TODO: batched matmul over the SGEMM.</summary>
internal static class CpuMatMul
{
    public static void MatMul(Tensor a, Tensor b, Tensor c) => throw new NotImplementedException();
}
