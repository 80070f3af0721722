namespace ManagedTensor.Cpu;

/// <summary>TODO: softmax, layer norm, RMS norm.</summary>
internal static class CpuNorm
{
    public static void Softmax(Tensor x, Tensor y, bool log) => throw new NotImplementedException();
    public static void LayerNorm(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd, NormAttrs a) => throw new NotImplementedException();
    public static void LayerNormBackward(Tensor dy, Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dx, Tensor dw, Tensor db) => throw new NotImplementedException();
    public static void RmsNorm(Tensor x, Tensor w, Tensor y, Tensor rstd, NormAttrs a) => throw new NotImplementedException();
    public static void RmsNormBackward(Tensor dy, Tensor x, Tensor w, Tensor rstd, Tensor dx, Tensor dw) => throw new NotImplementedException();
}
