using ManagedTensor.Models.IO;
using ManagedTensor.Models.RetNet;
using ManagedTensor.Tests.Autograd;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// Retention's three forms against each other in float64 (parallel, chunkwise at chunk sizes that do and do not
/// divide T, recurrent one position at a time), their gradients by finite differences, and the whole layer
/// against torchscale's parallel MultiScaleRetention (tests/fixtures/retnet/make_retention_fixture.py).
/// </summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class RetentionTests
{
    private static Retention Layer(double eps = 1e-6) => new(12, 2, 18, new Generator(4), Device.Cpu, eps);

    private static (Tensor Q, Tensor K, Tensor V) Inputs(int b, int t, int seed)
        => (TestUtil.RandomTensor([b, 2, t, 6], seed), TestUtil.RandomTensor([b, 2, t, 6], seed + 1), TestUtil.RandomTensor([b, 2, t, 9], seed + 2));

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(11)]
    [InlineData(32)]
    public void Parallel_chunkwise_and_recurrent_forms_agree(int chunk)
    {
        var ret = Layer();
        var (q, k, v) = Inputs(2, 11, 10);
        var parallel = ret.Parallel(q, k, v);
        TestUtil.AssertClose(parallel, ret.Chunkwise(q, k, v, chunk), 1e-12, 1e-13, $"chunkwise {chunk}");
        Tensor? state = null;
        var steps = new List<Tensor>();
        for (int n = 0; n < 11; n++)
        {
            var (o, s) = ret.Recurrent(q.Narrow(2, n, 1), k.Narrow(2, n, 1), v.Narrow(2, n, 1), state, n);
            steps.Add(o);
            state = s;
        }
        TestUtil.AssertClose(parallel, Tensor.Cat(steps.ToArray(), 2), 1e-12, 1e-13, "recurrent");
    }

    [Fact]
    public void Parallel_and_chunkwise_gradients_match_finite_differences()
    {
        var ret = Layer();
        var (q, k, v) = Inputs(1, 5, 20);
        GradCheck.Check(x => ret.Parallel(x[0], x[1], x[2]), [q, k, v]);
        GradCheck.Check(x => ret.Chunkwise(x[0], x[1], x[2], 2), [q, k, v]);
    }

    [Fact]
    public void The_layer_matches_torchscale_and_its_recurrent_steps_match_the_parallel_layer()
    {
        Dictionary<string, Tensor> f;
        using (var file = SafeTensors.Open(Fixtures.Path("retnet/retention_reference.safetensors"))) f = file.LoadAll();
        var ret = Layer(eps: 1e-12);
        ret.LoadStateDict(f, strict: false);
        var x = f["x"].To(DType.F32).Detach();
        x.RequiresGrad = true;
        var y = ret.Forward(x);
        TestUtil.AssertClose(f["y"], y, 1e-4, 1e-5, "y");
        (y * f["r"].To(DType.F32)).Sum().Backward();
        TestUtil.AssertClose(f["grad.x"], x.Grad!, 1e-3, 1e-4, "dL/dx");
        foreach (var (name, p) in ret.NamedParameters())
            TestUtil.AssertClose(f["grad." + name], p.Grad!, 1e-3, 1e-4, "dL/d" + name);

        TestUtil.AssertClose(y, ret.Forward(x, RetentionForm.Chunkwise, 4), 1e-5, 1e-6, "chunkwise layer");
        Tensor? state = null;
        var steps = new List<Tensor>();
        using (GradMode.NoGrad())
            for (int n = 0; n < 11; n++)
            {
                var (yn, s) = ret.Step(x.Narrow(1, n, 1), state, n);
                steps.Add(yn);
                state = s;
            }
        TestUtil.AssertClose(y, Tensor.Cat(steps.ToArray(), 1), 1e-5, 1e-6, "recurrent layer");
    }

    /// <summary>The composite runs on any backend: the chunkwise form and its gradients on ILGPU's CPU accelerator equal the CPU's.</summary>
    [Fact]
    public void Chunkwise_on_ilgpu_cpu_equals_the_cpu()
    {
        var ret = Layer();
        var dev = Device.Parse("ilgpu-cpu");
        var (q, k, v) = Inputs(1, 7, 30);
        Tensor[] Leaves(Device d) => new[] { q, k, v }.Select(t => { var l = t.To(DType.F32).To(d).Detach(); l.RequiresGrad = true; return l; }).ToArray();
        var cpu = Leaves(Device.Cpu);
        var gpu = Leaves(dev);
        var yc = ret.Chunkwise(cpu[0], cpu[1], cpu[2], 3);
        var yg = ret.Chunkwise(gpu[0], gpu[1], gpu[2], 3);
        TestUtil.AssertClose(yc, yg.To(Device.Cpu), 1e-5, 1e-6, "o");
        yc.Sum().Backward();
        yg.Sum().Backward();
        for (int i = 0; i < 3; i++) TestUtil.AssertClose(cpu[i].Grad!, gpu[i].Grad!.To(Device.Cpu), 1e-4, 1e-5, $"gradient {i}");
    }

    [Fact]
    public void Bad_shapes_are_refused_by_name()
    {
        Assert.Contains("must be even", Assert.Throws<ArgumentException>(() => new Retention(10, 2, 10, new Generator(1), Device.Cpu)).Message);
        Assert.Contains("must be (B, T, 12)", Assert.Throws<ArgumentException>(() => Layer().Forward(Tensor.Zeros([1, 3, 8]))).Message);
    }
}
