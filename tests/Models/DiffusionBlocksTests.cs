using ManagedTensor.Models.Diffusion;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Vision;
using ManagedTensor.Nn;
using ManagedTensor.Optim;
using ManagedTensor.Tests.Autograd;
using ManagedTensor.Tests.IO;
using Xunit;
using static ManagedTensor.Tests.TestUtil;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// The diffusion building blocks: a DiT block (adaLN-Zero) and the DDIM update against PyTorch in float64
/// (tests/fixtures/diffusion), noise schedules, patchify, timestep and class embeddings, EMA, and the classifier FID's
/// linear algebra.
/// </summary>
public sealed class DiffusionBlocksTests
{
    private static readonly Dictionary<string, Tensor> Fx = SafeTensors.Load(Fixtures.Path("diffusion/diffusion.safetensors"));

    private static Tensor Leaf(string name)
    {
        var t = Fx[name].Clone().Detach();
        t.RequiresGrad = true;
        return t;
    }

    [Fact]
    public void A_dit_block_matches_pytorch_in_values_and_every_gradient()
    {
        Linear L(string n) => new(Leaf($"dit.p.{n}.weight"), Leaf($"dit.p.{n}.bias"));
        var block = new DiT.Block(new SelfAttention(L("attn.qkv"), L("attn.proj"), heads: 2), L("mlp.fc1"), L("mlp.fc2"), new AdaLnZero(L("adaLN_modulation.1"), 6));
        var x = Leaf("dit.x");
        var c = Leaf("dit.c");
        var y = block.Forward(x, c);
        AssertClose(Fx["dit.y"], y, 1e-11, 1e-12, "y");
        (y * Fx["dit.dy"]).Sum().Backward();
        AssertClose(Fx["dit.grad_x"], x.Grad!, 1e-10, 1e-11, "dx");
        AssertClose(Fx["dit.grad_c"], c.Grad!, 1e-10, 1e-11, "dc");
        foreach (var (name, p) in block.NamedParameters())
            AssertClose(Fx["dit.grad." + name], p.Grad!, 1e-10, 1e-11, "d " + name);
    }

    [Fact]
    public void Adaln_zero_makes_a_fresh_dit_block_the_identity_and_modulate_differentiates()
    {
        var block = new DiT.Block(8, 2, new Generator(1), Device.Cpu);
        var x = Tensor.Randn([2, 5, 8], new Generator(2));
        AssertClose(x, block.Forward(x, Tensor.Randn([2, 8], new Generator(3))), 0, 0, "identity at init");
        GradCheck.Check(t => AdaLnZero.Modulate(t[0], t[1], t[2]), [RandomTensor([2, 3, 4], 1), RandomTensor([2, 1, 4], 2), RandomTensor([2, 1, 4], 3)]);
    }

    [Fact]
    public void The_ddim_update_matches_pytorch_for_eta_0_and_0_5()
    {
        var s = new NoiseSchedule("linear", 1000);
        var (x0, eps) = s.Split(Prediction.Epsilon, Fx["ddim.xt"], Fx["ddim.model_output"], 600);
        AssertClose(Fx["ddim.eta0"], Sampler.DdimStep(x0, eps, s.AlphaBar[600], s.AlphaBar[580], 0, null), 1e-12, 1e-12, "eta 0");
        AssertClose(Fx["ddim.eta5"], Sampler.DdimStep(x0, eps, s.AlphaBar[600], s.AlphaBar[580], 0.5, Fx["ddim.z"]), 1e-12, 1e-12, "eta 0.5");
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("cosine")]
    public void Schedules_match_ddpm_and_improved_ddpm(string kind) =>
        AssertClose(Fx["sched." + kind].ToDoubleArray(), new NoiseSchedule(kind, 1000).AlphaBar, 1e-12, 1e-15, kind);

    [Fact]
    public void V_prediction_round_trips_and_sampler_steps_are_respaced()
    {
        var s = new NoiseSchedule("cosine", 100);
        var x0 = Tensor.Rand([2, 1, 3, 3], new Generator(4), -0.9, 0.9, DType.F64);
        var eps = Tensor.Randn([2, 1, 3, 3], new Generator(5), dtype: DType.F64);
        int[] t = [37, 37];
        var xt = s.AddNoise(x0.To(DType.F32), eps.To(DType.F32), t).To(DType.F64);
        var v = s.Target(Prediction.V, x0.To(DType.F32), eps.To(DType.F32), t).To(DType.F64);
        var (x0v, epsv) = s.Split(Prediction.V, xt, v, 37, clip: false);
        AssertClose(x0, x0v, 1e-5, 1e-5, "x0 from v");
        AssertClose(eps, epsv, 1e-5, 1e-5, "eps from v");
        Assert.Equal([999, 979], Sampler.Timesteps(1000, 50)[..2]);
        Assert.Equal(19, Sampler.Timesteps(1000, 50)[^1]);
        Assert.Equal(Enumerable.Range(0, 10).Reverse(), Sampler.Timesteps(10, 10));
        Assert.Contains("--steps 0", Assert.Throws<UserErrorException>(() => new SamplerOptions(Steps: 0).Validate(1000)).Message);
        Assert.Contains("--cfg NaN", Assert.Throws<UserErrorException>(() => new SamplerOptions(Cfg: double.NaN).Validate(1000)).Message);
    }

    [Fact]
    public void Patchify_orders_tokens_as_dit_and_inverts_with_gradients()
    {
        var x = Tensor.Arange(0, 2 * 3 * 4 * 6, 1, DType.F64).Reshape(2, 3, 4, 6);
        var p = Patchify.ToPatches(x, 2);                                       // (2, 6, 12)
        Assert.Equal([2, 6, 12], p.Shape);
        // token 1 of sample 0 = patch at rows 0-1, cols 2-3; its values in (p, q, C) order: first (0, 0) of channels 0, 1, 2.
        Assert.Equal([2.0, 26, 50, 3], p.Narrow(1, 1, 1).Reshape(-1).ToDoubleArray()[..4]);
        AssertClose(x, Patchify.FromPatches(p, 2, 3, 4, 6), 0, 0, "round trip");
        GradCheck.Check(t => Patchify.ToPatches(t[0], 2).Exp(), [RandomTensor([1, 2, 4, 2], 6)]);
        Assert.Contains("multiples of the patch size 4", Assert.Throws<ArgumentException>(() => Patchify.ToPatches(x, 4)).Message);
    }

    [Fact]
    public void Timestep_and_class_embeddings()
    {
        var e = TimestepEmbedding.Sinusoidal([0, 7], 6, Device.Cpu).ToDoubleArray();
        Assert.Equal([1.0, 1, 1, 0, 0, 0], e[..6]);                            // cos first, then sin
        double f1 = Math.Exp(-Math.Log(10000) / 3);
        Assert.Equal(Math.Cos(7 * f1), e[7], 6);
        Assert.Equal(Math.Sin(7 * f1), e[10], 6);
        var emb = new ClassEmbedding(10, 4, 0.5, new Generator(1), Device.Cpu);
        var table = emb.Table.Weight.ToDoubleArray();
        Assert.Equal(table[(10 * 4)..], emb.Forward([10]).ToDoubleArray());     // the null class is the last row
        var dropped = emb.Forward(Enumerable.Repeat(3, 200).ToArray(), new Generator(9)).ToDoubleArray();
        int nulls = Enumerable.Range(0, 200).Count(i => dropped[i * 4] == table[40]);
        Assert.InRange(nulls, 70, 130);                                        // about half with p = 0.5
        Assert.Contains("label 11", Assert.Throws<ArgumentException>(() => emb.Forward([11])).Message);
    }

    [Fact]
    public void Ema_averages_with_warm_up_and_swaps()
    {
        var lin = new Linear(Tensor.Full([1, 1], 1.0), Tensor.Full([1], 0.0));
        var ema = new Ema(lin, decay: 0.5);
        using (GradMode.NoGrad()) lin.Weight.CopyFrom_(Tensor.Full([1, 1], 3.0));
        ema.Update();                                                          // decay min(0.5, 1/10) = 0.1: 0.1 * 1 + 0.9 * 3
        ema.Swap();
        Assert.Equal(2.8, lin.Weight.Item(), 6);
        ema.Swap();
        Assert.Equal(3.0, lin.Weight.Item(), 6);
        Assert.Equal(2.0 / 11, ema.CurrentDecay, 9);                          // warm-up: min(0.5, (1 + 1) / (10 + 1))
    }

    [Fact]
    public void Fid_is_zero_for_one_set_and_matches_the_closed_form_for_diagonal_gaussians()
    {
        var rng = new Random(3);
        int n = 400, d = 3;
        var a = new double[n * d];
        var b = new double[n * d];
        for (int i = 0; i < n * d; i++) { a[i] = rng.NextDouble(); b[i] = 2 * rng.NextDouble() + 0.5; }
        var ga = FeatureFid.Fit(a, n, d);
        Assert.Equal(0, FeatureFid.Distance(ga, ga), 8);
        var gb = FeatureFid.Fit(b, n, d);
        // Make both covariances exactly diagonal: then FID = sum (mu_a - mu_b)^2 + (s_a + s_b - 2 sqrt(s_a s_b)).
        var da = new FeatureFid.Gaussian(ga.Mean, Diag(ga.Cov), n);
        var db = new FeatureFid.Gaussian(gb.Mean, Diag(gb.Cov), n);
        double expected = 0;
        for (int j = 0; j < d; j++)
            expected += Math.Pow(ga.Mean[j] - gb.Mean[j], 2) + ga.Cov[j, j] + gb.Cov[j, j] - 2 * Math.Sqrt(ga.Cov[j, j] * gb.Cov[j, j]);
        Assert.Equal(expected, FeatureFid.Distance(da, db), 10);
        // Jacobi: V diag(l) V^T rebuilds a random symmetric matrix.
        var m = new double[5, 5];
        for (int i = 0; i < 5; i++) for (int j = 0; j <= i; j++) m[i, j] = m[j, i] = rng.NextDouble() - 0.5;
        var (l, v) = SymmetricEigen.Decompose(m);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
                Assert.Equal(m[i, j], Enumerable.Range(0, 5).Sum(k => v[i, k] * l[k] * v[j, k]), 12);
    }

    private static double[,] Diag(double[,] c)
    {
        int d = c.GetLength(0);
        var r = new double[d, d];
        for (int i = 0; i < d; i++) r[i, i] = c[i, i];
        return r;
    }
}
