namespace ManagedTensor.Gpu.Kernels;
internal static class IndexKernels {
 public static void IndexSelect(GpuBackend b, Tensor x, Tensor i, Tensor y, int a) => throw new NotSupportedException();
 public static void IndexAdd(GpuBackend b, Tensor d, Tensor i, Tensor s, int a) => throw new NotSupportedException();
 public static void Gather(GpuBackend b, Tensor x, Tensor i, Tensor y, int a) => throw new NotSupportedException();
 public static void ScatterAdd(GpuBackend b, Tensor d, Tensor i, Tensor s, int a) => throw new NotSupportedException();
 public static IEnumerable<KernelSpec> Specs() => []; }
internal static class LossKernels {
 public static void CrossEntropy(GpuBackend b, Tensor l, Tensor t, Tensor loss, Tensor lse, CrossEntropyAttrs a) => throw new NotSupportedException();
 public static void CrossEntropyBackward(GpuBackend b, Tensor d, Tensor l, Tensor t, Tensor lse, Tensor dl, CrossEntropyAttrs a) => throw new NotSupportedException();
 public static IEnumerable<KernelSpec> Specs() => []; }
internal static class ConvKernels {
 public static void Conv2d(GpuBackend b, Tensor x, Tensor w, Tensor bias, Tensor y, Conv2dAttrs a) => throw new NotSupportedException();
 public static void BackwardInput(GpuBackend b, Tensor dy, Tensor w, Tensor dx, Conv2dAttrs a) => throw new NotSupportedException();
 public static void BackwardWeight(GpuBackend b, Tensor dy, Tensor x, Tensor dw, Conv2dAttrs a) => throw new NotSupportedException();
 public static IEnumerable<KernelSpec> Specs() => []; }
internal static class PoolKernels {
 public static void MaxPool2d(GpuBackend b, Tensor x, Tensor y, Tensor am, Pool2dAttrs p) => throw new NotSupportedException();
 public static void MaxPool2dBackward(GpuBackend b, Tensor dy, Tensor am, Tensor dx) => throw new NotSupportedException();
 public static void AvgPool2d(GpuBackend b, Tensor x, Tensor y, Pool2dAttrs p) => throw new NotSupportedException();
 public static void AvgPool2dBackward(GpuBackend b, Tensor dy, Tensor dx, Pool2dAttrs p) => throw new NotSupportedException();
 public static void Upsample(GpuBackend b, Tensor x, Tensor y, int s) => throw new NotSupportedException();
 public static void UpsampleBackward(GpuBackend b, Tensor dy, Tensor dx, int s) => throw new NotSupportedException();
 public static IEnumerable<KernelSpec> Specs() => []; }
internal static class OptimKernels { public static void AdamWStep(GpuBackend b, Tensor p, Tensor g, Tensor m, Tensor v, AdamWAttrs a) => throw new NotSupportedException(); public static IEnumerable<KernelSpec> Specs() => []; }
