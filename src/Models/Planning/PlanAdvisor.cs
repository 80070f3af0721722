namespace ManagedTensor.Models.Planning;

/// <summary>
/// The cheapest change to a recipe that makes its plan fit a memory: single changes first, in order of what they cost
/// (checkpointing: a third more compute; 8-bit moments: a little precision; offload: host traffic each step; a smaller
/// micro-batch with more accumulation: the same tokens per step, slower; LoRA or QLoRA instead of full: a different
/// method; a shorter sequence: different training), then the same changes added up in that order.
/// </summary>
public static class PlanAdvisor
{
    private static readonly (string Change, Func<PlanRecipe, PlanRecipe?> Apply)[] Changes =
    [
        ("--checkpointing", r => r.Checkpointing ? null : r with { Checkpointing = true }),
        ("--optim adamw8bit", r => r.Optimizer8Bit ? null : r with { Optimizer8Bit = true }),
        ("--offload", r => r.OptimizerOffload ? null : r with { OptimizerOffload = true }),
        ("a micro-batch of 1 with --grad-accum x batch", r => r.Batch == 1 ? null : r with { GradAccum = r.GradAccum * r.Batch, Batch = 1 }),
        ("--recipe lora:16", r => r.Lora ? null : r with { LoraRank = 16 }),
        ("--recipe qlora:16", r => r.MatrixFormat.IsQuantized() ? null : r with { LoraRank = r.Lora ? r.LoraRank : 16, MatrixFormat = DType.NF4 }),
        ("--seq half as long", r => r.Seq < 2 ? null : r with { Seq = r.Seq / 2 }),
    ];

    /// <summary>The changes (as flags) and the plan that fits <paramref name="memory"/>, or null when nothing here makes it fit.</summary>
    public static (IReadOnlyList<string> Changes, MemoryPlan Plan)? Suggest(ModelShape model, PlanRecipe recipe, long memory)
    {
        foreach (var (change, apply) in Changes)
            if (apply(recipe) is { } single && MemoryPlanner.Predict(model, single) is { } plan && plan.Fits(memory))
                return ([change], plan);
        var applied = new List<string>();
        var r = recipe;
        foreach (var (change, apply) in Changes)
        {
            if (apply(r) is not { } next) continue;
            r = next;
            applied.Add(change);
            var plan = MemoryPlanner.Predict(model, r);
            if (plan.Fits(memory)) return (applied, plan);
        }
        return null;
    }
}
