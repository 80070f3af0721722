namespace ManagedTensor.Models.Training;

/// <summary>
/// What any training loop reports step by step (`mt train`'s <see cref="GptTrainer"/>, `mt finetune`'s
/// <see cref="FinetuneTrainer"/>); the app renders it as a live progress bar or plain lines.
/// </summary>
public interface ITrainStepObserver
{
    void OnStep(int iter, double loss, double lr, double tokensPerSecond, double msPerIter);
    void OnEval(int iter, double trainLoss, double valLoss);

    /// <summary>A checkpoint of step <paramref name="iter"/> was written to <paramref name="path"/> (and copied as the best when <paramref name="best"/>).</summary>
    void OnCheckpoint(int iter, string path, bool best);
}
