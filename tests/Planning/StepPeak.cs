using ManagedTensor.Models.Training;
using ManagedTensor.Nn;
using ManagedTensor.Optim;

namespace ManagedTensor.Tests.Planning;

/// <summary>
/// Measures a training step's peak on a device's allocator the way the trainer runs it: weights (and AdamW's moments)
/// made under their categories, then steps of micro-batches (<see cref="MicroBatch"/>) in a step scope, the gradients
/// clipped, AdamW stepped. The first step warms up (RoPE tables, kernels); the peak of the second, less the live bytes
/// before the model was made, is the step's peak: weights + optimizer state + what the step allocates.
/// </summary>
internal static class StepPeak
{
    public static long Measure(Device device, Func<Module> makeModel, Func<Module, Tensor> loss, int gradAccum = 1, bool clip = true, Action<int>? beforeStep = null)
    {
        Settle();
        long before = DeviceMemory.Stats(device)!.LiveBytes;
        Module model;
        using (DeviceMemory.Category(MemoryCategory.Weights)) model = makeModel();
        AdamW opt;
        using (DeviceMemory.Category(MemoryCategory.OptimizerState)) opt = new AdamW(model.NamedParameters(), 1e-3);
        var parameters = model.Parameters().ToList();
        var memory = (IDeviceMemory)Backends.For(device);
        for (int step = 0; step < 2; step++)
        {
            if (step == 1)
            {
                Settle();
                memory.ResetPeak();
            }
            beforeStep?.Invoke(step);
            using var scope = DeviceMemory.Scope();
            for (int micro = 0; micro < gradAccum; micro++) MicroBatch.Backward(parameters, () => loss(model), 1.0 / gradAccum);
            foreach (var p in parameters)
                if (p.Grad is { } g) DeviceMemory.Tag(g, MemoryCategory.Grads);
            if (clip) GradClip.ClipGradNorm(parameters, 1.0);
            opt.Step();
            opt.ZeroGrad();
        }
        long peak = memory.Stats.PeakBytes - before;
        GC.KeepAlive(model);
        GC.KeepAlive(opt);
        return peak;
    }

    /// <summary>Lets tensors earlier code dropped be finalized now, so live bytes change only through the step.</summary>
    private static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
