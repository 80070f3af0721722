using ManagedTensor.Optim;
using Xunit;

namespace ManagedTensor.Tests.Autograd;

/// <summary>Optimizers, clipping and the schedule against hand-computed values of torch's formulas.</summary>
public class OptimizerTests
{
    private static Tensor Param(double[] values, int[] shape)
    {
        var p = Tensor.FromArray(values, shape);
        p.RequiresGrad = true;
        return p;
    }

    [Fact]
    public void AdamW_decays_only_matrices_and_matches_the_formula()
    {
        var w = Param([1.0, -2.0, 3.0, 0.5], [2, 2]);
        var b = Param([1.0, 1.0], [2]);
        var opt = new AdamW([("w", w), ("b", b)], lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.5);
        for (int step = 1; step <= 2; step++)
        {
            w.Grad = Tensor.FromArray(new[] { 0.1, 0.2, -0.3, 0.0 }, [2, 2]);
            b.Grad = Tensor.Zeros([2], DType.F64);
            opt.Step();
        }
        // Bias: zero gradient and no decay, so it must not move at all.
        Assert.Equal([1.0, 1.0], b.ToDoubleArray());
        // Weight element 0 by torch's AdamW, two steps with the same gradient g = 0.1.
        double p = 1.0, m = 0, v = 0;
        for (int t = 1; t <= 2; t++)
        {
            p *= 1 - 0.1 * 0.5;
            m = 0.9 * m + 0.1 * 0.1;
            v = 0.99 * v + 0.01 * 0.01;
            p -= 0.1 / (1 - Math.Pow(0.9, t)) * m / (Math.Sqrt(v) / Math.Sqrt(1 - Math.Pow(0.99, t)) + 1e-8);
        }
        Assert.Equal(p, w.ToDoubleArray()[0], 12);
        Assert.Equal(2, opt.StepCount);
        Assert.Equal(4, opt.StateTensors().Count());
    }

    [Fact]
    public void Sgd_momentum_and_nesterov_follow_torch()
    {
        var p = Param([1.0], [1]);
        var q = Param([1.0], [1]);
        var plain = new Sgd([p], lr: 0.1, momentum: 0.9, weightDecay: 0.01);
        var nesterov = new Sgd([q], lr: 0.1, momentum: 0.9, nesterov: true);
        double x = 1, buf = 0, y = 1, bufN = 0;
        for (int t = 0; t < 3; t++)
        {
            p.Grad = Tensor.FromArray(new[] { 0.5 }, [1]);
            q.Grad = Tensor.FromArray(new[] { 0.5 }, [1]);
            plain.Step();
            nesterov.Step();
            double g = 0.5 + 0.01 * x;
            buf = t == 0 ? g : 0.9 * buf + g;
            x -= 0.1 * buf;
            bufN = t == 0 ? 0.5 : 0.9 * bufN + 0.5;
            y -= 0.1 * (0.5 + 0.9 * bufN);
        }
        Assert.Equal(x, p.Item(), 12);
        Assert.Equal(y, q.Item(), 12);
        Assert.Throws<ArgumentException>(() => new Sgd([p], 0.1, momentum: 0, nesterov: true));
    }

    [Fact]
    public void Clip_grad_norm_scales_to_the_max_norm_and_returns_the_norm_before()
    {
        var a = Param([0.0, 0.0], [2]);
        var b = Param([0.0], [1]);
        a.Grad = Tensor.FromArray(new[] { 3.0, 0.0 }, [2]);
        b.Grad = Tensor.FromArray(new[] { 4.0 }, [1]);
        double norm = GradClip.ClipGradNorm([a, b], maxNorm: 1.0);
        Assert.Equal(5.0, norm, 12);
        double scale = 1.0 / (5.0 + 1e-6);
        Assert.Equal(3 * scale, a.Grad!.ToDoubleArray()[0], 12);
        Assert.Equal(4 * scale, b.Grad!.Item(), 12);
        // Below the limit nothing changes.
        Assert.Equal(5 * scale, GradClip.ClipGradNorm([a, b], maxNorm: 10), 9);
        Assert.Equal(4 * scale, b.Grad!.Item(), 12);
    }

    [Fact]
    public void Clip_grad_norm_scales_in_place_counts_a_shared_gradient_per_parameter_and_scales_it_once()
    {
        // c and d get the same gradient tensor, as autograd gives the two inputs of an add: the norm is that of
        // (3, 4, 4), 41^0.5, and the shared tensor is scaled once.
        var (c, d) = (Param([0.0], [1]), Param([0.0], [1]));
        var e = Param([0.0], [1]);
        var shared = Tensor.FromArray(new[] { 4.0 }, [1]);
        (c.Grad, d.Grad, e.Grad) = (shared, shared, Tensor.FromArray(new[] { 3.0 }, [1]));
        double norm = GradClip.ClipGradNorm([c, d, e], maxNorm: 1.0);
        Assert.Equal(Math.Sqrt(41), norm, 12);
        double scale = 1.0 / (Math.Sqrt(41) + 1e-6);
        Assert.Same(shared, c.Grad);
        Assert.Equal(4 * scale, shared.Item(), 12);
        Assert.Equal(3 * scale, e.Grad!.Item(), 12);

        // A non-contiguous gradient (a broadcast view) gets a new tensor instead.
        var f = Param([0.0, 0.0], [2]);
        f.Grad = Tensor.FromArray(new[] { 10.0 }, [1]).Expand([2]);
        GradClip.ClipGradNorm([f], maxNorm: 1.0);
        Assert.All(f.Grad!.ToDoubleArray(), v => Assert.Equal(1 / Math.Sqrt(2), v, 6));
    }

    [Fact]
    public void Cosine_schedule_warms_up_decays_and_floors()
    {
        var s = new CosineSchedule(MaxLr: 1e-3, MinLr: 1e-4, WarmupIters: 100, DecayIters: 2000);
        Assert.Equal(1e-3 * 1 / 101, s.LearningRate(0), 15);
        Assert.Equal(1e-3 * 100 / 101, s.LearningRate(99), 15);
        Assert.Equal(1e-3, s.LearningRate(100), 15);
        Assert.Equal(1e-4 + 0.5 * 9e-4, s.LearningRate(1050), 15);
        Assert.Equal(1e-4, s.LearningRate(2000), 15);
        Assert.Equal(1e-4, s.LearningRate(5000), 15);
    }
}
