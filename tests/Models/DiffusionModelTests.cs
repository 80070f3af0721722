using ManagedTensor.Models.Diffusion;
using ManagedTensor.Models.Vision;
using ManagedTensor.Tests.Data;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>The U-Net and the DiT at tiny sizes (shapes, gradients to every weight) and the trainer's exact resume.</summary>
public sealed class DiffusionModelTests
{
    private sealed class Quiet : IImageTrainObserver
    {
        public void OnStart(int step, int total) { }
        public void OnStep(int step, double loss, double lr, double imagesPerSecond, double msPerStep) { }
        public void OnMessage(string line) { }
    }

    private static readonly DiffusionConfig TinyUNet = new(UnetChannels: 8, ChannelMults: "1,2", Heads: 2, TrainSteps: 50);
    private static readonly DiffusionConfig TinyDiT = new(Arch: "dit", PatchSize: 8, DitHidden: 16, DitDepth: 1, DitHeads: 2, TrainSteps: 50, Prediction: "v", Schedule: "cosine");

    [Theory]
    [InlineData("unet")]
    [InlineData("dit")]
    public void Both_denoisers_map_images_to_images_and_train_every_weight(string arch)
    {
        var cfg = arch == "unet" ? TinyUNet : TinyDiT;
        var net = Denoiser.Create(cfg, new Generator(1), Device.Cpu);
        var x = Tensor.Randn([2, 1, 32, 32], new Generator(2));
        var y = net.Forward(x, [3, 40], [1, 10]);      // class 10 = the null class
        Assert.Equal(x.Shape, y.Shape);
        // Zero-initialized layers (DDPM's output convs, DiT's final linear and adaLN gates, the attention outputs) pass no
        // gradient until a step moves them off zero: two steps unblock every path, the third backward reaches every weight.
        var opt = new ManagedTensor.Optim.AdamW(net.NamedParameters(), 1e-2, weightDecay: 0);
        for (int step = 0; step < 3; step++)
        {
            opt.ZeroGrad();
            (net.Forward(x, [3, 40], [1, 10]) - x).Square().Mean().Backward();
            if (step < 2) opt.Step();
        }
        foreach (var (name, p) in net.NamedParameters())
            Assert.True(p.Grad is { } g && g.Abs().Sum().Item() > 0, $"{arch}: no gradient reaches {name}");
    }

    /// <summary>
    /// A "denoiser" that knows the clean image: its output for x_t is the exact eps (or v), plus an offset a for rows
    /// with a class and a * s / (s - 1) for rows of the null class, so that only guidance at scale s mixes them right:
    ///   u + s (c - u) = exact + a s/(s-1) + s (a - a s/(s-1)) = exact.   (At s = 1 no guidance runs and a = 0.)
    /// </summary>
    private sealed class Oracle : Denoiser
    {
        private readonly Tensor _x0, _offset;
        private readonly double _guidance;
        private readonly NoiseSchedule _s;

        public Oracle(DiffusionConfig c, Tensor x0, double guidance) : base(c)
        {
            (_x0, _guidance) = (x0, guidance);
            _offset = guidance == 1 ? x0.ZerosLike() : Tensor.Randn(x0.Shape, new Generator(11)) * 0.3;
            _s = new NoiseSchedule(c.Schedule, c.TrainSteps);
            Parameter("unused", Tensor.Zeros([1]));
        }

        public override Tensor Forward(Tensor x, double[] t, int[] labels, Generator? dropGen = null)
        {
            Assert.All(t, ti => Assert.Equal(t[0], ti));
            int ti = (int)t[0];
            double a = Math.Sqrt(_s.AlphaBar[ti]), s = Math.Sqrt(1 - _s.AlphaBar[ti]);
            int b = _x0.Shape[0];
            Assert.True(x.Shape[0] == b || x.Shape[0] == 2 * b, $"batch {x.Shape[0]}");
            var rows = Enumerable.Range(0, x.Shape[0]).Select(i =>
            {
                var x0 = _x0.Narrow(0, i % b, 1);
                var eps = (x.Narrow(0, i, 1) - x0 * a) / s;
                var exact = Config.PredictionKind == Prediction.Epsilon ? eps : eps * a - x0 * s;
                var off = _offset.Narrow(0, i % b, 1);
                return exact + (labels[i] == Config.Classes ? off * (_guidance / (_guidance - 1)) : off);
            });
            return Tensor.Cat(rows.ToArray(), 0);
        }
    }

    public static TheoryData<string, string, string, double> SamplerCases()
    {
        var d = new TheoryData<string, string, string, double>();
        foreach (string method in new[] { "ddim", "ddpm" })
            foreach (string prediction in new[] { "eps", "v" })
                foreach (string schedule in new[] { "linear", "cosine" })
                    foreach (double cfg in new[] { 1.0, 3.0 })
                        d.Add(method, prediction, schedule, cfg);
        return d;
    }

    [Theory]
    [MemberData(nameof(SamplerCases))]
    public void Every_sampler_returns_the_image_an_exact_denoiser_knows(string method, string prediction, string schedule, double cfg)
    {
        var cfgModel = new DiffusionConfig(ImageSize: 4, Prediction: prediction, Schedule: schedule, TrainSteps: 100);
        var x0 = Tensor.Rand([2, 1, 4, 4], new Generator(3), -0.9, 0.9);
        var images = Sampler.Sample(new Oracle(cfgModel, x0, cfg), [1, 2], new SamplerOptions(method, 10, cfg, 0, 7));
        ManagedTensor.Tests.TestUtil.AssertClose(x0, images, 1e-3, 1e-3, $"{method} {prediction} {schedule} cfg {cfg}");
    }

    [Fact]
    public void A_resumed_run_continues_exactly_as_an_unbroken_one()
    {
        string data = TinyFashion.Write(TinyFashion.TempDir("diff-data"), 40, 10);
        var train = new DiffusionTrainConfig(DataDir: data, MaxSteps: 4, BatchSize: 3, SampleEvery: 2, SampleSteps: 2, LogInterval: 1, WarmupSteps: 1);
        string a = TinyFashion.TempDir("diff-a"), b = TinyFashion.TempDir("diff-b");
        var straight = DiffusionTrainer.Create(TinyDiT, train with { OutDir = a }, Device.Cpu);
        straight.Run(new Quiet());
        DiffusionTrainer.Create(TinyDiT, train with { OutDir = b, MaxSteps = 2 }, Device.Cpu).Run(new Quiet());
        Assert.True(File.Exists(Path.Combine(b, "samples_000002.png")));
        var resumed = DiffusionTrainer.Resume(b, Device.Cpu, maxSteps: 4);
        Assert.Equal(2, resumed.Step);
        resumed.Run(new Quiet());
        Assert.Equal(straight.History.Select(h => h.Train), resumed.History.Select(h => h.Train));
        var sa = DiffusionCheckpoint.Load(a);
        var sb = DiffusionCheckpoint.Load(b);
        foreach (var (name, t) in sa.Tensors(""))
            Assert.Equal(t.ToDoubleArray(), sb.Tensors("")[name].ToDoubleArray());
        Assert.Contains("holds a run", Assert.Throws<UserErrorException>(() => DiffusionTrainer.Create(TinyDiT, train with { OutDir = a }, Device.Cpu)).Message);
    }

    /// <summary>
    /// The held-out-class recipe: a base trained without class 9, then LoRA on it trained on class 9 only. The base's
    /// weights come through unchanged, the adapters and the class table train, the run resumes exactly, and sampling
    /// loads it.
    /// </summary>
    [Fact]
    public void Lora_adapts_a_base_to_a_held_out_class_and_leaves_its_weights_alone()
    {
        string data = TinyFashion.Write(TinyFashion.TempDir("diff-lora-data"), 40, 10);
        var train = new DiffusionTrainConfig(DataDir: data, MaxSteps: 2, BatchSize: 4, SampleEvery: 100, SampleSteps: 1, LogInterval: 1, WarmupSteps: 0, LearningRate: 1e-2);
        string baseDir = TinyFashion.TempDir("diff-lora-base");
        var baseTrain = train with { OutDir = baseDir, Classes = "0-8" };
        Assert.DoesNotContain(9, DiffusionTrainer.Create(TinyUNet, baseTrain, Device.Cpu).DrawBatch().Labels);
        DiffusionTrainer.Create(TinyUNet, baseTrain, Device.Cpu, replace: true).Run(new Quiet());

        var lora = train with { Classes = "9", Base = baseDir, LoraRank = 2, LoraAlpha = 4, MaxSteps = 4 };
        string a = TinyFashion.TempDir("diff-lora-a"), b = TinyFashion.TempDir("diff-lora-b");
        Assert.All(DiffusionTrainer.Create(TinyUNet, lora with { OutDir = a }, Device.Cpu).DrawBatch().Labels, l => Assert.Equal(9, l));
        var straight = DiffusionTrainer.Create(TinyUNet, lora with { OutDir = a }, Device.Cpu, replace: true);
        straight.Run(new Quiet());
        DiffusionTrainer.Create(TinyUNet, lora with { OutDir = b, MaxSteps = 2 }, Device.Cpu).Run(new Quiet());
        var resumed = DiffusionTrainer.Resume(b, Device.Cpu, maxSteps: 4);
        resumed.Run(new Quiet());
        var tuned = DiffusionCheckpoint.Load(a).Tensors("");
        foreach (var (name, t) in DiffusionCheckpoint.Load(b).Tensors(""))
            Assert.Equal(tuned[name].ToDoubleArray(), t.ToDoubleArray());

        foreach (var (name, w) in DiffusionCheckpoint.Load(baseDir).Tensors("ema."))
        {
            if (name.StartsWith("class_embed", StringComparison.Ordinal)) Assert.NotEqual(w.ToDoubleArray(), tuned[name].ToDoubleArray());
            else Assert.Equal(w.ToDoubleArray(), tuned[name].ToDoubleArray());
        }
        Assert.Contains(tuned, kv => kv.Key.Contains(".lora_B.", StringComparison.Ordinal) && !kv.Key.StartsWith("optim.", StringComparison.Ordinal)
            && kv.Value.ToDoubleArray().Any(v => v != 0));

        var net = DiffusionCheckpoint.LoadModel(a, Device.Cpu);
        Assert.Equal([2, 1, 32, 32], Sampler.Sample(net, [9, 9], new SamplerOptions("ddim", 2, 3.0, 0, 1)).Shape);
        Assert.Contains("--base", Assert.Throws<UserErrorException>(() => (train with { LoraRank = 2 }).Validate()).Message);
        Assert.Contains("a LoRA run", Assert.Throws<UserErrorException>(() => DiffusionTrainer.Create(TinyUNet, lora with { OutDir = TinyFashion.TempDir("diff-lora-c"), Base = a }, Device.Cpu)).Message);
        Assert.Contains("'12'", Assert.Throws<UserErrorException>(() => (train with { Classes = "3,12" }).Validate()).Message);
    }
}
