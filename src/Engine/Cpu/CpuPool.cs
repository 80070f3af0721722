namespace ManagedTensor.Cpu;

/// <summary>TODO: pooling and upsampling.</summary>
internal static class CpuPool
{
    public static void MaxPool2d(Tensor x, Tensor y, Tensor argmax, Pool2dAttrs p) => throw new NotImplementedException();
    public static void MaxPool2dBackward(Tensor dy, Tensor argmax, Tensor dx, Pool2dAttrs p) => throw new NotImplementedException();
    public static void AvgPool2d(Tensor x, Tensor y, Pool2dAttrs p) => throw new NotImplementedException();
    public static void AvgPool2dBackward(Tensor dy, Tensor dx, Pool2dAttrs p) => throw new NotImplementedException();
    public static void UpsampleNearest2d(Tensor x, Tensor y, int scale) => throw new NotImplementedException();
    public static void UpsampleNearest2dBackward(Tensor dy, Tensor dx, int scale) => throw new NotImplementedException();
}
