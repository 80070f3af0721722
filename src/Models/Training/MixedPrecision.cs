using ManagedTensor.Optim;

namespace ManagedTensor.Models.Training;

/// <summary>
/// The trainers' --optim and --autocast settings, named as bitsandbytes and PyTorch users know them, and what each builds.
/// --optim: adamw (float32 moments beside the weights), adamw8bit (bitsandbytes' block-wise 8-bit moments; the engine's
/// 8-bit AdamW keeps them in host memory and updates on the CPU, as <see cref="OffloadedAdamW"/>), offload (float32
/// moments in host memory, updated on the CPU: ZeRO-Offload's optimizer half). --autocast: off, bf16 (<see cref="Autocast"/>),
/// fp16 (with a <see cref="GradScaler"/>).
/// </summary>
public static class MixedPrecision
{
    public static readonly string[] OptimKinds = ["adamw", "adamw8bit", "offload"];
    public static readonly string[] AutocastModes = ["off", "bf16", "fp16"];

    public static void ValidateOptim(string kind)
    {
        if (!OptimKinds.Contains(kind)) throw new UserErrorException($"--optim '{kind}' is not an optimizer: {string.Join(", ", OptimKinds)}");
    }

    /// <summary>The 16-bit dtype of --autocast, or null for off.</summary>
    public static DType? AutocastDType(string mode) => mode switch
    {
        "off" => null,
        "bf16" => DType.BF16,
        "fp16" => DType.F16,
        _ => throw new UserErrorException($"--autocast '{mode}' is not a mode: {string.Join(", ", AutocastModes)}"),
    };

    /// <summary>The optimizer of <paramref name="kind"/> over the parameters that require a gradient (frozen ones get no state).</summary>
    public static IStatefulOptimizer CreateOptimizer(string kind, IEnumerable<(string Name, Tensor Tensor)> parameters, double lr, double beta1, double beta2, double weightDecay)
    {
        using var category = DeviceMemory.Category(MemoryCategory.OptimizerState);
        return kind switch
        {
            "adamw" => new AdamW(parameters, lr, beta1, beta2, 1e-8, weightDecay),
            "adamw8bit" => new OffloadedAdamW(parameters, lr, beta1, beta2, 1e-8, weightDecay, eightBit: true),
            "offload" => new OffloadedAdamW(parameters, lr, beta1, beta2, 1e-8, weightDecay),
            _ => throw new UserErrorException($"--optim '{kind}' is not an optimizer: {string.Join(", ", OptimKinds)}"),
        };
    }
}
