using ManagedTensor.Nn;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Autograd;

/// <summary>The custom-backward hook (CustomFunction) and its two users: activation checkpointing and the straight-through estimator.</summary>
public class CustomFunctionTests
{
    /// <summary>x^3 with its derivative written by hand, 3 x^2 g.</summary>
    private sealed class Cube : CustomFunction
    {
        protected override Tensor Forward(Tensor[] inputs) => inputs[0] * inputs[0] * inputs[0];
        protected override Tensor?[] Backward(Tensor[] inputs, Tensor output, Tensor grad) => [grad * inputs[0] * inputs[0] * 3];
    }

    /// <summary>A function whose backward is deliberately not the forward's derivative: proves the rule used is the function's.</summary>
    private sealed class DoubleGradIdentity : CustomFunction
    {
        protected override Tensor Forward(Tensor[] inputs) => inputs[0];
        protected override Tensor?[] Backward(Tensor[] inputs, Tensor output, Tensor grad) => [grad * 2];
    }

    [Fact]
    public void ACustomBackwardPassesAGradientCheck() =>
        GradCheck.Check(x => new Cube().Apply(x).Tanh() * x, RandomTensor([3, 4], 1));

    [Fact]
    public void TheFunctionsOwnBackwardIsUsed()
    {
        var x = RandomTensor([5], 2);
        x.RequiresGrad = true;
        var y = new DoubleGradIdentity().Apply(x);
        Assert.NotSame(x, y);
        Assert.Equal(Op.Custom, y.Node!.Op);
        Assert.True(x.IsLeaf); // the input kept its identity
        y.Sum().Backward();
        AssertClose(Tensor.Full([5], 2, DType.F64), x.Grad!, 0, 0, "grad");
    }

    [Fact]
    public void WithoutGradientsNothingIsRecorded()
    {
        var y = new Cube().Apply(RandomTensor([2], 3));
        Assert.Null(y.Node);
    }

    /// <summary>A small block with everything that must be recomputed faithfully: two linears, GELU, dropout.</summary>
    private static (Func<Tensor, Tensor> Block, Tensor[] Parameters, Generator DropoutGen) MakeBlock(int seed, double dropout)
    {
        var initGen = new Generator((ulong)seed);
        var fc = new Linear(6, 12, bias: true, initGen, Device.Cpu);
        var proj = new Linear(12, 6, bias: true, initGen, Device.Cpu);
        var ps = fc.Parameters().Concat(proj.Parameters()).Select(p => p.To(DType.F64).Detach()).ToArray();
        foreach (var p in ps) p.RequiresGrad = true;
        var gen = new Generator(99);
        Tensor Block(Tensor x) =>
            Functional.Dropout((x.MatMul(ps[0].MT) + ps[1]).Gelu().MatMul(ps[2].MT) + ps[3], dropout, gen);
        return (Block, ps, gen);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.3)]
    public void CheckpointedBlocksGiveTheSameGradients(double dropout)
    {
        var x0 = RandomTensor([4, 6], 4);
        Tensor[] Run(bool checkpointed)
        {
            var (block, ps, gen) = MakeBlock(5, dropout);
            var x = x0.Clone().Detach();
            x.RequiresGrad = true;
            // Two blocks in a row, as a model stacks them: the second sees the first's output.
            var h = checkpointed ? Checkpoint.Run(block, x, gen) : block(x);
            h = checkpointed ? Checkpoint.Run(block, h, gen) : block(h);
            var loss = (h * h).Sum();
            loss.Backward();
            // The recomputation rewinds and restores the generator: the run draws as many numbers as without checkpoints.
            var offset = Tensor.Scalar(gen.Offset, DType.F64);
            return [loss, offset, x.Grad!, .. ps.Select(p => p.Grad!)];
        }
        var plain = Run(false);
        var ckpt = Run(true);
        for (int i = 0; i < plain.Length; i++) AssertClose(plain[i], ckpt[i], 1e-12, 1e-12, $"tensor {i}");
    }

    [Fact]
    public void ACheckpointedBlockRecordsOneNode()
    {
        var (block, ps, gen) = MakeBlock(6, 0);
        var x = RandomTensor([2, 6], 7);
        x.RequiresGrad = true;
        var y = Checkpoint.Run(block, x, gen);
        Assert.Equal(Op.Custom, y.Node!.Op);
        Assert.Same(x, Assert.Single(y.Node.Inputs)); // no activation of the block is held by the graph
    }

    [Fact]
    public void CheckpointPassesAGradientCheck()
    {
        var (block, _, gen) = MakeBlock(8, 0);
        GradCheck.Check(x => Checkpoint.Run(block, x, gen), RandomTensor([3, 6], 9));
    }

    [Fact]
    public void StraightThroughPassesTheGradientUnchanged()
    {
        // BitNet's weight quantizer: w -> round(clamp(w / absmean, -1, 1)) * absmean has zero derivative almost everywhere.
        var w = RandomTensor([4, 5], 10);
        w.RequiresGrad = true;
        static Tensor Ternary(Tensor t)
        {
            var scale = t.Abs().Mean().AddScalar(1e-5);
            var q = (t / scale).Clamp(-1, 1);
            q = q.Gt(0.5).To(t.DType) - q.Lt(-0.5).To(t.DType); // round to {-1, 0, 1}
            return q * scale;
        }
        var y = StraightThrough.Apply(w, Ternary);
        var values = y.ToDoubleArray();
        double s = w.Abs().Mean().Item() + 1e-5;
        Assert.All(values, v => Assert.Contains(Math.Round(v / s), new[] { -1.0, 0.0, 1.0 }));
        var g = RandomTensor([4, 5], 11);
        (y * g).Sum().Backward();
        AssertClose(g, w.Grad!, 0, 0, "identity gradient");
    }

    [Fact]
    public void StraightThroughRejectsAShapeChange()
    {
        var e = Assert.Throws<ArgumentException>(() => StraightThrough.Apply(RandomTensor([2, 3], 12), t => t.Sum()));
        Assert.Contains("changed the shape", e.Message);
    }
}
