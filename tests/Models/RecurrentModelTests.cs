using ManagedTensor.Models;
using ManagedTensor.Models.Generation;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Mamba;
using ManagedTensor.Models.Rwkv;
using ManagedTensor.Models.Training;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// Mamba and RWKV-6: the recurrent form (one token at a time through a fixed-size state, what `mt sample` runs)
/// gives the parallel forward's logits at every position, including sequences longer than a scan chunk; greedy
/// decoding with and without the state gives the same tokens; a mismatched state is refused; and `mt train ARCH`
/// runs the shared trainer: checkpoint, exact resume, sample.
/// </summary>
public sealed class RecurrentModelTests : TrainCliTestBase
{
    private static RecurrentLM Tiny(string arch) => arch switch
    {
        "mamba" => new MambaLM(new MambaConfig(VocabSize: 11, NLayer: 2, DModel: 12, DState: 5, DConv: 3), new Generator(3)),
        _ => new RwkvLM(new RwkvConfig(VocabSize: 11, NLayer: 2, NEmbd: 12, HeadSize: 3, MixRank: 4, DecayRank: 5), new Generator(3)),
    };

    [Theory]
    [InlineData("mamba", 70)]   // past the scan's 64-step chunk
    [InlineData("rwkv", 37)]    // past WKV's 32-step chunk
    public void Decoding_token_by_token_gives_the_parallel_logits(string arch, int t)
    {
        var model = Tiny(arch);
        model.Eval();
        var gen = new Generator(5);
        var ids = Enumerable.Range(0, 2 * t).Select(_ => (long)gen.NextInt(11)).ToArray();
        using var noGrad = GradMode.NoGrad();
        var parallel = model.Logits(Tensor.FromArray(ids, [2, t])).ToArray<float>();          // (2, T, V)
        var state = model.NewState(2);
        for (int p = 0; p < t; p++)
        {
            var step = model.Step(Tensor.FromArray(new[] { ids[p], ids[t + p] }, [2]), state).ToArray<float>(); // (2, V)
            for (int b = 0; b < 2; b++)
                for (int v = 0; v < 11; v++)
                    Assert.True(Math.Abs(parallel[(b * t + p) * 11 + v] - step[b * 11 + v]) < 2e-5,
                        $"{arch} position {p} row {b} token {v}: parallel {parallel[(b * t + p) * 11 + v]}, recurrent {step[b * 11 + v]}");
        }
    }

    [Theory]
    [InlineData("mamba")]
    [InlineData("rwkv")]
    public void Greedy_tokens_are_the_same_with_and_without_the_recurrent_state(string arch)
    {
        var model = Tiny(arch);
        var prompt = Tensor.FromArray(new long[] { 1, 2, 3 }, [1, 3]);
        var withState = model.Generate(prompt, 12, new Sampler(new SamplerOptions(0f)));
        var without = model.Generate(prompt, 12, new Sampler(new SamplerOptions(0f)), useCache: false);
        Assert.Equal(without[0], withState[0]);
        Assert.Equal(15, withState[0].Count);
    }

    [Theory]
    [InlineData("mamba")]
    [InlineData("rwkv")]
    public void A_state_of_another_shape_is_refused(string arch)
    {
        var model = Tiny(arch);
        var e = Assert.Throws<ArgumentException>(() => model.Step(Tensor.FromArray(new long[] { 1, 2, 3 }, [3]), model.NewState(2)));
        Assert.Contains("state of 2 layers", e.Message);
        var other = arch == "mamba"
            ? (RecurrentLM)new MambaLM(new MambaConfig(11, 2, 12, DState: 4, DConv: 3), new Generator(1))
            : new RwkvLM(new RwkvConfig(11, 2, 12, HeadSize: 4, MixRank: 4, DecayRank: 5), new Generator(1));
        Assert.Throws<ArgumentException>(() => model.Step(Tensor.FromArray(new long[] { 1 }, [1]), other.NewState(1)));
    }

    [Theory]
    [InlineData("mamba")]
    [InlineData("rwkv")]
    public void Mt_train_arch_checkpoints_resumes_exactly_and_samples(string arch)
    {
        string full = Path.Combine(Dir, arch + "-full"), split = Path.Combine(Dir, arch + "-split");
        var (code, straight) = Mt(Args(arch, full, 12));
        Assert.True(code == 0, straight);
        Assert.Contains($"model: {arch}, 2 layers", straight);
        Assert.True(File.Exists(Path.Combine(full, "loss.png")), straight);
        var (c1, first) = Mt(Args(arch, split, 10));
        Assert.True(c1 == 0, first);
        var refused = ManagedTensor.Tests.Apps.Mt.Run("train", arch == "mamba" ? "rwkv" : "mamba", "--resume", "--out-dir", split);
        Assert.NotEqual(0, refused.Code);
        Assert.Contains($"holds a {arch} run: continue it with mt train {arch} --resume", refused.Err);
        var (c2, resumed) = Mt(["train", arch, "--resume", "--out-dir", split, "--max-iters", "12", "--sample-length", "0"]);
        Assert.True(c2 == 0, resumed);
        Assert.Equal(Losses(straight), Losses(first).Concat(Losses(resumed)).ToList());
        var a = SafeTensors.Load(GptCheckpoint.PathIn(full));
        var b = SafeTensors.Load(GptCheckpoint.PathIn(split));
        foreach (var (name, t) in a) Assert.True(t.ToArray<float>().SequenceEqual(b[name].ToArray<float>()), $"{name} differs after resume");

        using (var ckpt = GptCheckpoint.Load(full)) Assert.Equal(arch, ckpt.Arch.Name);
        var (c3, sample) = Mt("sample", "--out-dir", full, "--length", "30", "--prompt", "the", "--temperature", "0");
        Assert.True(c3 == 0, sample);
        Assert.StartsWith("the", sample);
        var (_, again) = Mt("sample", "--out-dir", full, "--length", "30", "--prompt", "the", "--temperature", "0", "--no-kv-cache");
        Assert.Equal(sample, again); // greedy: the recurrent state and the full-context reference pick the same tokens
    }

    /// <summary>The GPT test run's flags with the architecture's own model flags: 2 layers of 16, no heads or dropout.</summary>
    private string[] Args(string arch, string outDir, int maxIters)
    {
        var args = TrainArgs(outDir, maxIters).ToList();
        args[1] = arch;
        foreach (string flag in new[] { "--n-head", "--dropout" })
        {
            int i = args.IndexOf(flag);
            args.RemoveRange(i, 2);
        }
        args[args.IndexOf("--eval-interval") + 1] = "5";
        args.AddRange(arch == "rwkv" ? ["--head-size", "8"] : ["--d-state", "4"]);
        return [.. args];
    }
}
