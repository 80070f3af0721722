using ManagedTensor.Models.Vision;
using Spectre.Console;

namespace ManagedTensor.Apps;

/// <summary>Plain progress lines for the image trainers (classifier, diffusion), as <see cref="PlainTrainProgress"/> prints a language model's.</summary>
public class PlainImageProgress(TextWriter output) : IImageTrainObserver
{
    protected int Total { get; private set; }

    public virtual void OnStart(int step, int total)
    {
        Total = total;
        if (step > 0) output.WriteLine($"resuming at step {step}");
    }

    public virtual void OnStep(int step, double loss, double lr, double imagesPerSecond, double msPerStep) =>
        output.WriteLine($"step {step + 1}/{Total}: loss {loss:F4}, lr {lr:0.00e+00}, {msPerStep:F1} ms/step, {imagesPerSecond:N0} img/s, ETA {Eta(step, msPerStep)}");

    public virtual void OnMessage(string line) => output.WriteLine(line);

    protected string Eta(int step, double msPerStep) => TimeSpan.FromMilliseconds(Math.Max(0, Total - step - 1) * msPerStep).ToString(@"hh\:mm\:ss");

    /// <summary>Runs <paramref name="train"/> under a live bar when <paramref name="output"/> is an interactive console, else with plain lines.</summary>
    public static void Run(TextWriter output, Action<IImageTrainObserver> train)
    {
        bool live = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!live)
        {
            train(new PlainImageProgress(output));
            return;
        }
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx => train(new LiveImageProgress(ctx.AddTask("training"), output)));
    }
}

/// <summary>A live bar (step, loss, images/s) with evaluations and checkpoints printed above it.</summary>
public sealed class LiveImageProgress(ProgressTask task, TextWriter output) : PlainImageProgress(output)
{
    public override void OnStart(int step, int total)
    {
        base.OnStart(step, total);
        task.MaxValue = Math.Max(1, total);
        task.Value = step;
    }

    public override void OnStep(int step, double loss, double lr, double imagesPerSecond, double msPerStep)
    {
        task.Value = step + 1;
        task.Description = $"step {step + 1}/{Total}  loss {loss:F4}  {imagesPerSecond:N0} img/s  {msPerStep:F1} ms/step";
    }

    public override void OnMessage(string line) => AnsiConsole.MarkupLine(Markup.Escape(line));
}
