using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>`mt train moe` shows what its training loss is made of: the cross-entropy and the load-balancing loss.</summary>
public sealed class MoeTrainCliTests : TrainCliTestBase
{
    [Fact]
    public void The_progress_line_splits_the_loss_into_cross_entropy_and_aux()
    {
        var args = TrainArgs(Path.Combine(Dir, "moe"), 2).ToList();
        args[1] = "moe";
        args.AddRange(["--experts", "3", "--top-k", "2"]);
        var (code, output) = Mt([.. args]);
        Assert.True(code == 0, output);
        var steps = output.Split('\n').Where(l => l.StartsWith("iter ", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, steps.Count);
        Assert.All(steps, l => Assert.Matches(@"loss \d+\.\d{4}, .* \(cross-entropy \d+\.\d{4} \+ 0\.01 x aux \d\.\d{3} \(balanced: 2\)\)", l));
    }
}
