namespace ManagedTensor.Bench;

/// <summary>
/// `norm-silu [--reps N]`: a norm then SiLU as two ops against the fused op, interleaved, forward and backward:
/// batch norm at YOLOv8n's training-step shapes (batch 2, 640 x 640; BatchNorm2d + Silu against BatchNormSilu2d) and
/// group norm with 8 groups at the diffusion U-Net's (batch 64, 32 x 32; GroupNorm + Silu against GroupNormSilu). The
/// backward of two ops is SiluBackward then the norm's backward, from the stored norm output. Each figure is the best
/// of --reps runs on a fresh input (out of cache, as a conv's output of this size mostly is), process CPU ms per call.
/// Threads: all the process may use; `taskset -c 0` for one core.
/// </summary>
public static class NormSiluRunner
{
    private static readonly int[][] BatchNormShapes = [[2, 16, 320, 320], [2, 32, 160, 160], [2, 64, 80, 80], [2, 128, 40, 40], [2, 256, 20, 20]];
    private static readonly int[][] GroupNormShapes = [[64, 32, 32, 32], [64, 64, 16, 16], [64, 64, 8, 8]];
    private const int Groups = 8;

    public static void Run(string[] args)
    {
        int reps = 5;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--reps") reps = int.Parse(args[++i]);
            else throw new ArgumentException($"norm-silu: unknown argument '{args[i]}' (expected --reps N)");
        }
        Console.WriteLine($"{"norm",-6} {"shape",-20} {"fwd 2 ops",10} {"fwd fused",10} {"bwd 2 ops",10} {"bwd fused",10}  (cpu ms per call, best of {reps})");
        foreach (var shape in BatchNormShapes) Row("batch", shape, reps, BatchNorm);
        foreach (var shape in GroupNormShapes) Row("group", shape, reps, GroupNorm);
    }

    /// <summary>The four timed bodies for input x, gradient dz, weight w and bias b: forward separate, fused; backward separate, fused.</summary>
    private delegate Action[] Bodies(Tensor x, Tensor dz, Tensor w, Tensor b);

    private static Action[] BatchNorm(Tensor x, Tensor dz, Tensor w, Tensor b)
    {
        var (y, mean, invstd) = x.BatchNorm2d(w, b, 1e-3); // what the forward saved for the backward
        return
        [
            () => x.BatchNorm2d(w, b, 1e-3).Y.Silu(),
            () => x.BatchNormSilu2d(w, b, 1e-3),
            () => Tensor.Apply(BatchNormOps.BatchNorm2dBackward, null, Tensor.Apply(SiluBackwardOps.SiluBackward, null, dz, y)[0], x, w, mean, invstd),
            () => Tensor.Apply(BatchNormSiluOps.BatchNormSilu2dBackward, null, dz, x, w, b, mean, invstd),
        ];
    }

    private static Action[] GroupNorm(Tensor x, Tensor dz, Tensor w, Tensor b)
    {
        var attrs = new GroupNormAttrs(Groups);
        var r = Tensor.Apply(GroupNormOps.GroupNorm, attrs, x, w, b); // y, mean, invstd
        return
        [
            () => x.GroupNorm(Groups, w, b).Silu(),
            () => x.GroupNormSilu(Groups, w, b),
            () => Tensor.Apply(GroupNormOps.GroupNormBackward, null, Tensor.Apply(SiluBackwardOps.SiluBackward, null, dz, r[0])[0], x, w, r[1], r[2]),
            () => Tensor.Apply(GroupNormSiluOps.GroupNormSiluBackward, null, dz, x, w, b, r[1], r[2]),
        ];
    }

    private static void Row(string norm, int[] shape, int reps, Bodies bodies)
    {
        var gen = new Generator(0);
        int c = shape[1];
        var w = Tensor.Rand([c], gen, 0.5, 1.5);
        var b = Tensor.Rand([c], gen, -1, 1);
        var best = new double[4];
        Array.Fill(best, double.MaxValue);
        for (int r = 0; r <= reps; r++) // the first round warms up
        {
            var timed = bodies(Tensor.Randn(shape, gen), Tensor.Randn(shape, gen), w, b);
            for (int k = 0; k < 4; k++)
            {
                double start = OpProfiler.ProcessCpuMs();
                timed[k]();
                double ms = OpProfiler.ProcessCpuMs() - start;
                if (r > 0) best[k] = Math.Min(best[k], ms);
            }
        }
        Console.WriteLine($"{norm,-6} {Tensor.ShapeString(shape),-20} {best[0],10:F2} {best[1],10:F2} {best[2],10:F2} {best[3],10:F2}");
    }
}
