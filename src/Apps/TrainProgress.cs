using ManagedTensor.Models;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.Training;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>
/// Plain progress lines (when output is not a terminal, e.g. CI logs and tests), as nanoGPT prints them, except that
/// a step is counted when done: the line after the first step reads "iter 1/N", the last "iter N/N", as the live bar.
/// </summary>
public class PlainTrainProgress(TextWriter output) : ITrainingObserver
{
    protected TextWriter Output { get; } = output;
    /// <summary>The run's last step, set by OnStart (or by a loop that has no OnStart, such as `mt finetune`'s).</summary>
    public int MaxIters { get; set; }

    /// <summary>The model being trained (set by OnStart), asked for its <see cref="TrainableLM.LossNote"/> at each step line.</summary>
    protected TrainableLM? Model { get; private set; }

    public virtual void OnStart(TrainableLM model, TrainConfig config, int startIter, ITokenizer tokenizer, TextDataset data)
    {
        MaxIters = config.MaxIters;
        Model = model;
        Output.WriteLine($"data: {config.DataPath}, {tokenizer.Kind} tokenizer, vocab {tokenizer.VocabSize}, {data.Train.Length:N0} train / {data.Val.Length:N0} val tokens");
        Output.WriteLine($"model: {model.Architecture}, {config.NLayer} layers, {(model is GPT ? $"{config.NHead} heads, " : "")}{config.NEmbd} wide, block {config.BlockSize}: {model.ParameterCount() / 1e6:F2}M parameters on {model.Device}");
        if (config.Optim != "adamw" || config.Autocast != "off") Output.WriteLine($"optimizer {config.Optim}, autocast {config.Autocast}");
        if (startIter > 0) Output.WriteLine($"resuming from {config.OutDir} at iteration {startIter}");
    }

    public virtual void OnStep(int iter, double loss, double lr, double tokensPerSecond, double msPerIter)
        => Output.WriteLine($"iter {iter + 1}/{MaxIters}: loss {loss:F4}, lr {lr:0.00e+00}, {msPerIter:F1} ms/iter, {tokensPerSecond:N0} tok/s, ETA {Eta(iter, msPerIter)}{LossParts}");

    /// <summary>" (the model's loss note)", or nothing when the loss is the cross-entropy alone.</summary>
    protected string LossParts => Model?.LossNote is { } note ? $" ({note})" : "";

    public virtual void OnEval(int iter, double trainLoss, double valLoss)
        => Output.WriteLine($"step {iter}: train loss {trainLoss:F4}, val loss {valLoss:F4}");

    public virtual void OnCheckpoint(int iter, string path, bool best) => Output.WriteLine(Saved(iter, path, best));

    protected static string Saved(int iter, string path, bool best) =>
        $"saved checkpoint of step {iter} to {path}{(best ? $" (best val loss so far: also {ManagedTensor.Models.Training.GptCheckpoint.BestFileName})" : "")}";

    protected string Eta(int iter, double msPerIter) => TimeSpan.FromMilliseconds(Math.Max(0, MaxIters - iter - 1) * msPerIter).ToString(@"hh\:mm\:ss");
}

/// <summary>A live progress bar (step, loss, tokens/s, ETA) with evaluations printed above it.</summary>
public sealed class LiveTrainProgress(ProgressTask task, TextWriter output) : PlainTrainProgress(output)
{
    public override void OnStart(TrainableLM model, TrainConfig config, int startIter, ITokenizer tokenizer, TextDataset data)
    {
        base.OnStart(model, config, startIter, tokenizer, data);
        task.MaxValue = Math.Max(1, config.MaxIters);
        task.Value = startIter;
    }

    public override void OnStep(int iter, double loss, double lr, double tokensPerSecond, double msPerIter)
    {
        task.Value = iter + 1;
        task.Description = $"iter {iter + 1}/{MaxIters}  loss {loss:F4}{Markup.Escape(LossParts)}  {tokensPerSecond:N0} tok/s  {msPerIter:F1} ms/iter";
    }

    public override void OnEval(int iter, double trainLoss, double valLoss)
        => AnsiConsole.MarkupLine($"[bold]step {iter}[/]: train loss {trainLoss:F4}, val loss [green]{valLoss:F4}[/]");

    public override void OnCheckpoint(int iter, string path, bool best) => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(Saved(iter, path, best))}[/]");
}
