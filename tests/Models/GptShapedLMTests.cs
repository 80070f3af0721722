using ManagedTensor.Models;
using ManagedTensor.Models.BitNet;
using ManagedTensor.Models.Moe;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// GPT, MoE-GPT and BitNet-GPT on their shared skeleton (<see cref="GptShapedLM{TConfig, TBlock}"/>) keep the
/// parameter names their checkpoints were written with before it (the lists below are read from checkpoints that
/// `mt train` wrote when each model built its own embeddings and head), and its checks name the model.
/// </summary>
public class GptShapedLMTests
{
    [Fact]
    public void Parameter_names_are_those_of_earlier_checkpoints()
    {
        var gpt = new GPT(new GptConfig(BlockSize: 8, VocabSize: 11, NLayer: 1, NHead: 2, NEmbd: 8, Bias: false), new Generator(1));
        Assert.Equal(["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight", "transformer.h.0.attn.c_attn.weight",
            "transformer.h.0.attn.c_proj.weight", "transformer.h.0.ln_2.weight", "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight",
            "transformer.ln_f.weight"], gpt.NamedParameters().Select(p => p.Name));
        var moe = new MoeGpt(new MoeConfig(BlockSize: 8, VocabSize: 11, NLayer: 1, NHead: 2, NEmbd: 8, Experts: 2, TopK: 1, ExpertHidden: 4), new Generator(1));
        Assert.Equal(["wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.weight", "h.0.attn.c_proj.weight", "h.0.ln_2.weight",
            "h.0.moe.w_up", "h.0.moe.w_down", "h.0.moe.router.proj.weight", "ln_f.weight"], moe.NamedParameters().Select(p => p.Name));
        var bitnet = new BitNetGpt(new BitNetConfig(BlockSize: 8, VocabSize: 11, NLayer: 1, NHead: 2, NEmbd: 8), new Generator(1));
        Assert.Equal(["wte.weight", "wpe.weight", "h.0.qkv.weight", "h.0.proj.weight", "h.0.fc1.weight", "h.0.fc2.weight", "ln_f.weight"],
            bitnet.NamedParameters().Select(p => p.Name));
    }

    [Fact]
    public void Positions_past_the_block_and_caches_longer_than_it_are_refused_naming_the_model()
    {
        var moe = new MoeGpt(new MoeConfig(BlockSize: 4, VocabSize: 11, NLayer: 1, NHead: 2, NEmbd: 8, Experts: 2, TopK: 1, ExpertHidden: 4), new Generator(1));
        var e = Assert.Throws<ArgumentException>(() => moe.Logits(Tensor.FromArray(new long[5], [1, 5])));
        Assert.Contains("MoE: cannot forward positions 0..4, block size is only 4", e.Message);
        var bitnet = new BitNetGpt(new BitNetConfig(BlockSize: 4, VocabSize: 11, NLayer: 1, NHead: 2, NEmbd: 8), new Generator(1));
        Assert.Contains("BitNet: input ids must be (B, T)", Assert.Throws<ArgumentException>(() => bitnet.Logits(Tensor.FromArray(new long[3], [3]))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => bitnet.NewCache(1, 5));
    }
}
