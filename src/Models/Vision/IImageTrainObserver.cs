namespace ManagedTensor.Models.Vision;

/// <summary>
/// What the image trainers (<see cref="ClassifierTrainer"/>, the diffusion trainer) report; the app renders it as the
/// language-model trainer's progress is rendered: a live bar on a terminal, plain lines otherwise.
/// </summary>
public interface IImageTrainObserver
{
    /// <summary>Training starts (or resumes) at <paramref name="step"/> of <paramref name="total"/>.</summary>
    void OnStart(int step, int total);

    /// <summary>Step <paramref name="step"/> (0-based) is done: its loss and the mean time per step since the last report.</summary>
    void OnStep(int step, double loss, double lr, double imagesPerSecond, double msPerStep);

    /// <summary>A line worth printing above the bar: an evaluation, a checkpoint, a sample grid.</summary>
    void OnMessage(string line);
}
