namespace ManagedTensor.Models.Training;

/// <summary>
/// A run whose loss or gradient norm became NaN or infinite. The trainer stops before the step's update and before
/// anything is written, so the checkpoints on disk stay those of the last good evaluation; the message names the
/// step, what was not finite and where that checkpoint is.
/// </summary>
public sealed class TrainingDivergedException(int step, string message) : UserErrorException(message)
{
    /// <summary>The iteration whose loss or gradient was not finite.</summary>
    public int Step { get; } = step;
}
