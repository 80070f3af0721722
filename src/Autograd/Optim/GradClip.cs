namespace ManagedTensor.Optim;

/// <summary>Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_.</summary>
public static class GradClip
{
    /// <summary>
    /// Scales all gradients by min(1, maxNorm / (||g|| + 1e-6)), where ||g|| is the L2 norm of all
    /// gradients taken together as one vector. Returns ||g|| before clipping.
    /// </summary>
    /// <remarks>
    /// Contiguous gradients are scaled in place, as torch's <c>g.mul_(coef)</c>, where a new tensor per parameter would be
    /// one more model-sized allocation every step. Autograd may hand one gradient tensor to several parameters (the two
    /// inputs of an add): it counts once per parameter in the norm, as its copies would, and is scaled once.
    /// </remarks>
    public static double ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        using var noGrad = GradMode.NoGrad();
        // Each distinct gradient tensor with the parameters it is the gradient of.
        var groups = parameters.Where(p => p.Grad is not null)
            .GroupBy(p => (object)p.Grad!, ReferenceEqualityComparer.Instance)
            .Select(s => (Grad: (Tensor)s.Key!, Params: s.ToList())).ToList();
        if (groups.Count == 0) return 0;
        Tensor? sumSquares = null;
        foreach (var (g, ps) in groups)
        {
            using var squares = g * g; // freed at once: the next gradient's squares reuse its buffer
            var s = squares.Sum().To(DType.F64);
            if (ps.Count > 1) s = s.MulScalar(ps.Count);
            sumSquares = sumSquares is null ? s : sumSquares + s;
        }
        double norm = Math.Sqrt(sumSquares!.Item());
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1)
            foreach (var (g, ps) in groups)
            {
                if (g.IsContiguous) g.MulScalar_(coef);
                else // a view (a broadcast one could alias an element to itself): a new tensor, as before
                {
                    var scaled = g.MulScalar(coef);
                    foreach (var p in ps) p.Grad = scaled;
                }
            }
        return norm;
    }
}
