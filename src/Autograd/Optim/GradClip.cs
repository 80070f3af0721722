namespace ManagedTensor.Optim;

/// <summary>Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_.</summary>
public static class GradClip
{
    /// <summary>
    /// Scales all gradients by min(1, maxNorm / (||g|| + 1e-6)), where ||g|| is the L2 norm of all
    /// gradients taken together as one vector. Returns ||g|| before clipping.
    /// </summary>
    public static double ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        using var noGrad = GradMode.NoGrad();
        var withGrad = parameters.Where(p => p.Grad is not null).ToList();
        if (withGrad.Count == 0) return 0;
        Tensor? sumSquares = null;
        foreach (var p in withGrad)
        {
            var s = (p.Grad! * p.Grad!).Sum().To(DType.F64);
            sumSquares = sumSquares is null ? s : sumSquares + s;
        }
        double norm = Math.Sqrt(sumSquares!.Item());
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1)
            foreach (var p in withGrad) p.Grad = p.Grad!.MulScalar(coef);
        return norm;
    }
}
