namespace ManagedTensor.Models.Training;

/// <summary>
/// One micro-batch of a gradient-accumulation step, run in a memory scope of its own: on a device (GPU, ilgpu-cpu)
/// what its forward and backward allocate is freed when it ends, not when the whole step ends, so accumulating over
/// k micro-batches holds one micro-batch's activations rather than k. The gradients are summed in place into the
/// first micro-batch's (the same sums autograd would make, old + new, without a new tensor per micro-batch), and only
/// those outlive the scope. On the CPU (no scopes) it is exactly loss.Backward().
/// </summary>
public static class MicroBatch
{
    /// <summary>
    /// Backpropagates <paramref name="lossOf"/>() times <paramref name="scale"/> into <paramref name="parameters"/>' gradients
    /// (adding to those already there) and returns the unscaled loss.
    /// </summary>
    public static double Backward(IReadOnlyList<Tensor> parameters, Func<Tensor> lossOf, double scale)
    {
        var sums = parameters.Select(p => p.Grad).ToArray();
        foreach (var p in parameters) p.Grad = null;
        using var scope = DeviceMemory.Scope();
        var loss = lossOf();
        (scale == 1 ? loss : loss.MulScalar(scale)).Backward();
        double value = loss.Item();
        // Autograd may hand two leaves one gradient tensor (both inputs of an Add): a sum updated in place must be a
        // tensor of its own, so a storage seen twice is copied.
        var seen = new HashSet<Storage>(ReferenceEqualityComparer.Instance);
        using var noGrad = GradMode.NoGrad();
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            if (p.Grad is not { } g) p.Grad = sums[i];
            else if (sums[i] is { } sum) p.Grad = sum.AddInPlace_(g);
            else p.Grad = scope.Keep(seen.Add(g.Storage) ? g : g.Clone());
        }
        return value;
    }
}
