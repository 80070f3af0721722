using System.CommandLine;
using ManagedTensor.Models.Training;

namespace ManagedTensor.Apps;

/// <summary>
/// One option that overrides one field of a run's configuration (<see cref="TrainConfig"/>, <see cref="FinetuneConfig"/>)
/// when given. <see cref="SafeOnResume"/>: changing it does not change the run's trajectory (when it stops, how often it
/// evaluates or prints), so --resume accepts it.
/// </summary>
internal sealed record FieldOption<TConfig>(Option Option, bool SafeOnResume, Func<TConfig, object> Get, Func<ParseResult, object> Value,
    Func<TConfig, ParseResult, TConfig> Apply)
{
    public bool Given(ParseResult p) => p.GetResult(Option) is { Implicit: false };
}

/// <summary>The option handling `mt train` and `mt finetune` share: --resume's check of the options given, and the options of the shared loop.</summary>
internal static class ConfigOptions
{
    public const string OptimDescription =
        "optimizer: adamw (float32 moments beside the weights), adamw8bit (bitsandbytes' block-wise 8-bit moments, kept in host memory " +
        "and updated on the CPU), offload (float32 moments in host memory, updated on the CPU: ZeRO-Offload)";

    public const string AutocastDescription =
        "mixed precision: bf16 or fp16 matmuls and attention with float32 master weights and optimizer state (fp16 adds dynamic loss scaling), or off";

    /// <summary>Restricts an --optim or --autocast option to its values.</summary>
    public static Option<string> Choices(this Option<string> option, string[] values)
    {
        option.AcceptOnlyFromAmong(values);
        return option;
    }

    /// <summary>
    /// The run's own configuration with the options given on the command line applied, when every one of them is safe
    /// to change on --resume or equal to the run's value; otherwise a user error listing what differs.
    /// </summary>
    public static TConfig ChangesOnResume<TConfig>(TConfig run, IEnumerable<FieldOption<TConfig>> fields, ParseResult p, string dir, TextWriter notices)
    {
        var refused = new List<string>();
        var changed = new List<string>();
        var result = run;
        var all = fields.ToList();
        foreach (var f in all.Where(f => f.Given(p) && f.Option.Name != "--out-dir"))
        {
            object was = f.Get(run), now = f.Value(p);
            if (was.Equals(now)) continue;
            if (f.SafeOnResume)
            {
                result = f.Apply(result, p);
                changed.Add($"{f.Option.Name} {now} (was {was})");
            }
            else refused.Add($"{f.Option.Name} {now} (the run has {was})");
        }
        if (refused.Count > 0)
            throw new UserErrorException(
                $"--resume continues the run in {dir} with its own settings, and these differ from it: {string.Join(", ", refused)}. " +
                $"Only {string.Join(", ", all.Where(f => f.SafeOnResume).Select(f => f.Option.Name))} may change on --resume; " +
                "to train with other settings, start a new run (another --out-dir, or --force to replace this one)");
        if (changed.Count > 0) notices.WriteLine($"resuming with {string.Join(", ", changed)}");
        return result;
    }
}
