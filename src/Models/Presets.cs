using ManagedTensor.Models.Training;

namespace ManagedTensor.Models;

/// <summary>
/// Training recipes that several architectures' presets (<see cref="ArchDef.Presets"/>) share. A class of its own, with
/// no static state, so that an architecture's static ArchDef can use it without waiting on <see cref="Architectures"/>'s
/// initialization (which reads those ArchDefs).
/// </summary>
public static class Presets
{
    /// <summary>
    /// nanoGPT's config/train_shakespeare_char.py schedule (the GPU recipe) on <paramref name="model"/>'s architecture and
    /// sizes: context 256, batch 64, 5000 iterations with the learning rate decayed over all of them, 200 batches per evaluation.
    /// </summary>
    public static TrainConfig ShakespeareChar(TrainConfig model) =>
        model with { BlockSize = 256, BatchSize = 64, MaxIters = 5000, LrDecayIters = 5000, EvalIters = 200 };
}
