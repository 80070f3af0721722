namespace ManagedTensor.Models.Planning;

/// <summary>One part of a plan: bytes on the device (or on the host), what they are, and the formula they come from.</summary>
public sealed record PlanPart(string Name, MemoryCategory Category, long Bytes, string Formula, bool OnHost = false);

/// <summary>
/// A prediction of a training step's peak device memory, made from a model's shape and a recipe before anything is
/// allocated (<see cref="MemoryPlanner.Predict"/>): the parts, their sum, and host memory for an offloaded optimizer.
/// </summary>
public sealed record MemoryPlan(ModelShape Model, PlanRecipe Recipe, IReadOnlyList<PlanPart> Parts, long TrainableParameters)
{
    /// <summary>The predicted peak of the device allocator, bytes (every device part, rounding included).</summary>
    public long PeakBytes => Parts.Where(p => !p.OnHost).Sum(p => p.Bytes);

    /// <summary>Host memory the recipe keeps there (offloaded optimizer state).</summary>
    public long HostBytes => Parts.Where(p => p.OnHost).Sum(p => p.Bytes);

    public long Bytes(MemoryCategory category) => Parts.Where(p => !p.OnHost && p.Category == category).Sum(p => p.Bytes);

    public bool Fits(long memoryBytes) => PeakBytes <= memoryBytes;

    /// <summary>How much of <see cref="PeakBytes"/> is the allocator's rounding of requests up to its size classes.</summary>
    public long RoundingBytes { get; init; }
}
