using ManagedTensor.Optim;
using Xunit;

namespace ManagedTensor.Tests.Autograd;

/// <summary>
/// <see cref="OffloadedAdamW"/>'s state for a checkpoint: float and 8-bit moments saved and restored give the steps an
/// unbroken optimizer takes, bit for bit; state of another kind is refused naming the entry.
/// </summary>
public sealed class OptimizerStateTests
{
    // 4096 values: the 8-bit optimizer quantizes this one's moments; the bias keeps float moments.
    private static (Tensor W, Tensor B) Parameters()
    {
        var w = Tensor.Rand([64, 64], new Generator(1), -1, 1);
        var b = Tensor.Rand([64], new Generator(2), -1, 1);
        w.RequiresGrad = b.RequiresGrad = true;
        return (w, b);
    }

    private static void Step(IOptimizer opt, Tensor w, Tensor b, int step)
    {
        w.Grad = Tensor.Rand([64, 64], new Generator(10 + (ulong)step), -1, 1);
        b.Grad = Tensor.Rand([64], new Generator(20 + (ulong)step), -1, 1);
        opt.Step();
        opt.ZeroGrad();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Saved_and_restored_state_continues_as_the_unbroken_optimizer(bool eightBit)
    {
        var (w1, b1) = Parameters();
        var unbroken = new OffloadedAdamW([("w", w1), ("b", b1)], 1e-2, eightBit: eightBit);
        for (int s = 0; s < 4; s++) Step(unbroken, w1, b1, s);

        var (w2, b2) = Parameters();
        var first = new OffloadedAdamW([("w", w2), ("b", b2)], 1e-2, eightBit: eightBit);
        for (int s = 0; s < 2; s++) Step(first, w2, b2, s);
        var state = first.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.Clone());
        Assert.Equal(eightBit, state.ContainsKey("exp_avg.w.q8"));
        var second = new OffloadedAdamW([("w", w2), ("b", b2)], 1e-2, eightBit: eightBit);
        second.LoadState(state, first.StepCount);
        for (int s = 2; s < 4; s++) Step(second, w2, b2, s);

        Assert.Equal(w1.ToArray<float>(), w2.ToArray<float>());
        Assert.Equal(b1.ToArray<float>(), b2.ToArray<float>());
    }

    [Fact]
    public void Float_state_is_refused_by_the_8_bit_optimizer_naming_the_entry()
    {
        var (w, b) = Parameters();
        var f32 = new OffloadedAdamW([("w", w), ("b", b)], 1e-2);
        var q8 = new OffloadedAdamW([("w", w), ("b", b)], 1e-2, eightBit: true);
        var e = Assert.Throws<ArgumentException>(() => q8.LoadState(f32.StateTensors().ToDictionary(), 0, "ckpt.safetensors"));
        Assert.Contains("ckpt.safetensors: optimizer state 'exp_avg.w.q8' is missing", e.Message);
        Assert.Contains("--optim", e.Message);
    }
}
