using ManagedTensor.Cpu;
using Xunit;

namespace ManagedTensor.Tests.Autograd;

/// <summary>
/// Gradient check by central finite differences in float64: the objective is
/// L = sum(f(inputs) * W) with fixed random weights W (so every output element matters, with a
/// different weight), dL/dx from <see cref="ManagedTensor.Autograd.Backward"/> is compared with
/// (L(x + h e_i) - L(x - h e_i)) / 2h for every element i of every differentiable input.
/// </summary>
public static class GradCheck
{
    public static void Check(Func<Tensor[], Tensor> f, Tensor[] inputs, double h = 1e-6, double rtol = 1e-5, double atol = 1e-7, bool[]? differentiable = null)
    {
        var leaves = inputs.Select((t, i) =>
        {
            var leaf = t.Clone().Detach(); // own, contiguous storage at offset 0: perturbed in place below
            leaf.RequiresGrad = t.DType.IsFloat() && (differentiable?[i] ?? true);
            return leaf;
        }).ToArray();
        var output = f(leaves);
        var weights = TestUtil.RandomTensor(output.Shape, seed: 977, output.DType);
        var objective = (output * weights).Sum();
        objective.Backward();

        for (int k = 0; k < leaves.Length; k++)
        {
            var leaf = leaves[k];
            if (!leaf.RequiresGrad) continue;
            Assert.True(leaf.Grad is not null, $"input {k} ({leaf.Describe()}) got no gradient");
            var analytic = leaf.Grad!.ToDoubleArray();
            var values = leaf.Data<double>();
            var numeric = new double[leaf.Numel];
            using (GradMode.NoGrad())
            {
                for (int i = 0; i < leaf.Numel; i++)
                {
                    double saved = values[i];
                    values[i] = saved + h;
                    double plus = (f(leaves) * weights).Sum().Item();
                    values[i] = saved - h;
                    double minus = (f(leaves) * weights).Sum().Item();
                    values[i] = saved;
                    numeric[i] = (plus - minus) / (2 * h);
                }
            }
            TestUtil.AssertClose(numeric, analytic, rtol, atol, $"gradient of input {k} {leaf.Describe()}");
        }
    }

    public static void Check(Func<Tensor, Tensor> f, Tensor x, double rtol = 1e-5, double atol = 1e-7)
        => Check(xs => f(xs[0]), [x], rtol: rtol, atol: atol);

    public static void Check(Func<Tensor, Tensor, Tensor> f, Tensor a, Tensor b, double rtol = 1e-5, double atol = 1e-7)
        => Check(xs => f(xs[0], xs[1]), [a, b], rtol: rtol, atol: atol);
}
