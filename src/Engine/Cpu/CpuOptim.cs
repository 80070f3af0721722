namespace ManagedTensor.Cpu;

/// <summary>TODO: fused AdamW.</summary>
internal static class CpuOptim
{
    public static void AdamWStep(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWAttrs a) => throw new NotImplementedException();
}
