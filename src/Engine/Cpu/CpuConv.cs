namespace ManagedTensor.Cpu;

/// <summary>TODO: conv2d by im2col + GEMM.</summary>
internal static class CpuConv
{
    public static void Conv2d(Tensor x, Tensor w, Tensor b, Tensor y, Conv2dAttrs a) => throw new NotImplementedException();
    public static void BackwardInput(Tensor dy, Tensor w, Tensor dx, Conv2dAttrs a) => throw new NotImplementedException();
    public static void BackwardWeight(Tensor dy, Tensor x, Tensor dw, Conv2dAttrs a) => throw new NotImplementedException();
}
