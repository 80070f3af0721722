namespace ManagedTensor.Cpu;

/// <summary>TODO: fused cross-entropy.</summary>
internal static class CpuLoss
{
    public static void CrossEntropy(Tensor logits, Tensor targets, Tensor loss, Tensor lse, CrossEntropyAttrs a) => throw new NotImplementedException();
    public static void CrossEntropyBackward(Tensor dloss, Tensor logits, Tensor targets, Tensor lse, Tensor dlogits, CrossEntropyAttrs a) => throw new NotImplementedException();
}
