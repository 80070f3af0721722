using ManagedTensor.Models.Planning;
using Xunit;

namespace ManagedTensor.Tests.Planning;

/// <summary>
/// `mt plan` against the figures issue 15 quotes (each a recipe run with PyTorch on a real card, so the plan is given the
/// CUDA context and bf16 autocast that those runs had). The sources give no micro-batch or sequence length for the first
/// two; the ones assumed here are said at each test.
/// </summary>
public class PublishedFiguresTests
{
    /// <summary>Figures in GB are read as GiB, the unit cards are sized in and PyTorch's memory summaries print.</summary>
    private const double GB = 1L << 30;

    private static PlanRecipe Cuda(PlanRecipe r) => r with { RuntimeReserve = PlanRecipe.CudaContextBytes };

    /// <summary>6.7B with LoRA r=64, checkpointing, ZeRO-Offload of the optimizer, flash attention, grad-accum 16: 21.8 GB (micro-batch 4 x 512 assumed).</summary>
    [Fact]
    public void Lora_6_7B_with_checkpointing_and_offload_peaks_near_21_8_GB()
    {
        var plan = MemoryPlanner.Predict(ModelShape.Named["llama-2-7b"], Cuda(PlanRecipe.Parse("lora:64", DType.BF16) with
        {
            Batch = 4, Seq = 512, GradAccum = 16, Checkpointing = true, OptimizerOffload = true, Autocast = true,
        }));
        Assert.InRange(plan.PeakBytes / GB, 21.8 * 0.85, 21.8 * 1.15);
        Assert.Equal(0, plan.Bytes(MemoryCategory.OptimizerState)); // offloaded: on the host
        Assert.True(plan.HostBytes > 0);
    }

    /// <summary>QLoRA of a 7B model (NF4 base, bf16, paged 8-bit AdamW, checkpointing) fits under 10 GB (micro-batch 1 x 512 assumed).</summary>
    [Fact]
    public void Qlora_7B_fits_under_10_GB()
    {
        var plan = MemoryPlanner.Predict(ModelShape.Named["llama-2-7b"], Cuda(PlanRecipe.Parse("qlora:64", DType.BF16) with
        {
            Batch = 1, Seq = 512, Checkpointing = true, Optimizer8Bit = true, Autocast = true,
        }));
        Assert.True(plan.PeakBytes < 10 * GB, $"QLoRA 7B: {plan.PeakBytes / GB:F2} GB");
        Assert.True(plan.PeakBytes > 10 * GB * 0.3, $"QLoRA 7B: {plan.PeakBytes / GB:F2} GB is implausibly small (the NF4 base alone is 3.8 GB)");
    }

    /// <summary>QLoRA of a 65B model fits in 48 GB.</summary>
    [Fact]
    public void Qlora_65B_fits_in_48_GB()
    {
        var plan = MemoryPlanner.Predict(ModelShape.Named["llama-65b"], Cuda(PlanRecipe.Parse("qlora:64", DType.BF16) with
        {
            Batch = 1, Seq = 512, Checkpointing = true, Optimizer8Bit = true, Autocast = true,
        }));
        Assert.InRange(plan.PeakBytes / GB, 30, 48);
    }

    /// <summary>Full fine-tuning of a 1B model at batch 1 needs about 18 GB (float32 weights, gradients and AdamW: 16 bytes per parameter).</summary>
    [Fact]
    public void Full_fine_tuning_of_1B_needs_about_18_GB()
    {
        var plan = MemoryPlanner.Predict(ModelShape.Named["tinyllama-1.1b"], Cuda(PlanRecipe.Parse("full", DType.F32) with { Batch = 1, Seq = 512, Checkpointing = true }));
        Assert.InRange(plan.PeakBytes / GB, 18 * 0.85, 18 * 1.15);
    }

    /// <summary>
    /// A 7B model in AMP needs about 120 GB (float32 master weights, their 16-bit copies, float32 gradients, AdamW). PyTorch's
    /// autocast cache keeps every matrix's 16-bit copy (12.3 GiB); this engine casts per matmul and a checkpointed block
    /// frees its copies with its scope (measured: MeasuredPeakTests.Autocast_step), so the plan is about 103 GiB.
    /// </summary>
    [Fact]
    public void Full_fine_tuning_of_7B_in_amp_needs_about_120_GB()
    {
        var plan = MemoryPlanner.Predict(ModelShape.Named["llama-2-7b"], Cuda(PlanRecipe.Parse("full", DType.BF16) with { Batch = 1, Seq = 512, Checkpointing = true, Autocast = true }));
        Assert.InRange(plan.PeakBytes / GB, 120 * 0.85, 120 * 1.15);
    }
}
