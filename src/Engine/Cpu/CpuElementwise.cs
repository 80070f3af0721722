namespace ManagedTensor.Cpu;

/// <summary>TODO: unary, binary (broadcast views), where.</summary>
internal static class CpuElementwise
{
    public static void Unary(Op op, Tensor x, Tensor y, OpAttrs? attrs) => throw new NotImplementedException();
    public static void Binary(Op op, Tensor a, Tensor b, Tensor y) => throw new NotImplementedException();
    public static void Where(Tensor cond, Tensor a, Tensor b, Tensor y) => throw new NotImplementedException();
}
