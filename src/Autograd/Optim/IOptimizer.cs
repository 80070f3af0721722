namespace ManagedTensor.Optim;

/// <summary>What a training loop needs from an optimizer.</summary>
public interface IOptimizer
{
    double LearningRate { get; set; }
    int StepCount { get; }
    IEnumerable<Tensor> Parameters { get; }
    void Step();
    void ZeroGrad();
}
