namespace ManagedTensor.Nn;

/// <summary>Stateless pieces shared by modules (torch.nn.functional).</summary>
public static class Functional
{
    /// <summary>x * mask / (1 - p) with mask ~ Bernoulli(1 - p), drawn as U[0,1) >= p.</summary>
    public static Tensor Dropout(Tensor x, double p, Generator gen)
    {
        if (p == 0) return x;
        Tensor keep;
        using (GradMode.NoGrad())
            keep = Tensor.Rand(x.Shape, gen, dtype: x.DType, device: x.Device).Ge(p).To(x.DType).MulScalar(1 / (1 - p));
        return x * keep;
    }

    /// <summary>Mean cross-entropy of logits (..., C) against integer targets (...); targets equal to ignoreIndex do not count.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100)
        => Tensor.CrossEntropy(logits.Reshape(-1, logits.Shape[^1]), targets.Reshape(-1), ignoreIndex);
}
