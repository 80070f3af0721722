using ManagedTensor.Models;
using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// Generation with a KV cache: a prompt prefilled and then one token at a time against the cache gives
/// the logits of running the whole sequence at once, and greedy generation (also past the block size,
/// where the window slides) gives the tokens of nanoGPT's cacheless loop.
/// </summary>
public class GptKvCacheTests
{
    private static readonly GptConfig Tiny = new(BlockSize: 16, VocabSize: 37, NLayer: 2, NHead: 2, NEmbd: 32, Dropout: 0, Bias: true);

    internal static GPT Model(Device device)
    {
        var model = new GPT(Tiny, new Generator(11), device);
        // nanoGPT's 0.02 init makes nearly uniform logits; larger weights make greedy choices decisive.
        var scaled = model.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.To(Device.Cpu).MulScalar(kv.Key.EndsWith("weight", StringComparison.Ordinal) && !kv.Key.Contains("ln") ? 20 : 1));
        model.LoadStateDict(scaled);
        model.Eval();
        return model;
    }

    internal static Tensor Prompt(int length, Device device)
    {
        var g = new Generator(5);
        return Tensor.FromArray(Enumerable.Range(0, 2 * length).Select(_ => (long)g.NextInt(Tiny.VocabSize)).ToArray(), [2, length], device);
    }

    [Fact]
    public void Prefill_then_single_tokens_give_the_full_forward_logits()
    {
        var model = Model(Device.Cpu);
        var idx = Prompt(11, Device.Cpu);
        using var _ = GradMode.NoGrad();
        var full = model.Forward(idx, targets: Tensor.Zeros([2, 11], DType.I64)).Logits; // (B, T, V) at every position
        using var cache = model.NewCache(batch: 2);
        var prefill = model.Forward(idx.Narrow(1, 0, 4), cache: cache).Logits;          // positions 0..3
        TestUtil.AssertClose(full.Narrow(1, 3, 1), prefill, rtol: 1e-5, atol: 1e-5, what: "prefill, last position");
        for (int t = 4; t < 11; t++)
        {
            var step = model.Forward(idx.Narrow(1, t, 1), cache: cache).Logits;        // one token against the cache
            TestUtil.AssertClose(full.Narrow(1, t, 1), step, rtol: 1e-5, atol: 1e-5, what: $"position {t} from the cache");
        }
        Assert.Equal(11, cache.Length);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(idx.Narrow(1, 0, 6), cache: cache));
        Assert.Contains("block size", e.Message);
    }

    [Fact]
    public void Greedy_generation_with_the_cache_equals_the_cacheless_loop_past_the_block_size()
    {
        var model = Model(Device.Cpu);
        var idx = Prompt(5, Device.Cpu);
        var greedy = new SamplerOptions(Temperature: 0);
        var cached = model.Generate(idx, 30, new Sampler(greedy));                   // 35 tokens > block 16: the window slides
        var plain = model.Generate(idx, 30, new Sampler(greedy), useCache: false);
        Assert.Equal(plain[0], cached[0]);
        Assert.Equal(plain[1], cached[1]);
        Assert.True(plain[0].Skip(5).Distinct().Count() > 3, "a degenerate model would not test much");
    }
}

/// <summary>The same generation on the GPU backend: single tokens go through the decode attention kernel.</summary>
[Collection(ManagedTensor.Tests.Gpu.IlgpuCpuCollection.Name)]
public class GptKvCacheGpuBackendTests
{
    [Fact]
    public void Cached_generation_on_the_gpu_backend_gives_the_cpu_tokens()
    {
        var greedy = new SamplerOptions(Temperature: 0);
        var cpu = GptKvCacheTests.Model(Device.Cpu).Generate(GptKvCacheTests.Prompt(3, Device.Cpu), 8, new Sampler(greedy));
        var gpu = GptKvCacheTests.Model(Device.IlgpuCpu).Generate(GptKvCacheTests.Prompt(3, Device.IlgpuCpu), 8, new Sampler(greedy));
        Assert.Equal(cpu[0], gpu[0]);
        Assert.Equal(cpu[1], gpu[1]);
    }
}
