using ManagedTensor.Models.Training;

namespace ManagedTensor.Models;

/// <summary>
/// One architecture `mt train` can train and `mt sample` can decode: its name (the subcommand), which of the
/// model flags it reads, its starting configurations, how its model config follows from the training config and
/// the vocabulary, and how to build it. Adding an architecture is one file with the model and one entry in
/// <see cref="Architectures.All"/>; the trainer, checkpoints, resume, loss plot and sampling are shared.
/// </summary>
/// <param name="Name">the subcommand and the checkpoint's "arch" metadata</param>
/// <param name="Summary">one line for `mt train --help`</param>
/// <param name="ModelFlags">the model options of <see cref="TrainConfig"/> the architecture reads (by flag name, without "--")</param>
/// <param name="Presets">named starting points; "shakespeare-char-cpu" is the default and sizes the model near the GPT CPU recipe's ~0.8M parameters</param>
/// <param name="ConfigType">the model config record, serialized as the checkpoint's model_config</param>
/// <param name="ModelConfig">the model config from the training config and the vocabulary size</param>
/// <param name="Create">the model with fresh weights: config, init generator, device, dropout seed</param>
/// <param name="Validate">checks of the training config that only this architecture needs (a user error naming the flag)</param>
public sealed record ArchDef(
    string Name,
    string Summary,
    string[] ModelFlags,
    IReadOnlyDictionary<string, TrainConfig> Presets,
    Type ConfigType,
    Func<TrainConfig, int, IModelConfig> ModelConfig,
    Func<IModelConfig, Generator, Device, ulong, TrainableLM> Create,
    Action<TrainConfig>? Validate = null);

/// <summary>A model config record: checked when built and when read from a checkpoint (ArgumentException naming the field).</summary>
public interface IModelConfig
{
    void Validate();
}

/// <summary>The architectures `mt train` and `mt sample` know, by name.</summary>
public static class Architectures
{
    public const string DefaultPreset = "shakespeare-char-cpu";

    public static readonly IReadOnlyList<ArchDef> All =
    [
        new("gpt", "train a GPT (nanoGPT architecture) on a text file; defaults: nanoGPT's CPU recipe on tiny Shakespeare",
            ["n-layer", "n-head", "n-embd", "dropout", "bias"],
            new Dictionary<string, TrainConfig>
            {
                [DefaultPreset] = new TrainConfig(),
                ["shakespeare-char"] = Presets.ShakespeareChar(new TrainConfig { NLayer = 6, NHead = 6, NEmbd = 384, Dropout = 0.2 }),
            },
            typeof(GptConfig),
            (c, vocab) => c.ModelConfig(vocab),
            (config, init, device, dropoutSeed) => new GPT((GptConfig)config, init, device, dropoutSeed),
            c =>
            {
                if (c.NEmbd % c.NHead != 0) throw new UserErrorException($"--n-embd {c.NEmbd} must be a multiple of --n-head {c.NHead}");
            }),
        Mamba.MambaLM.Arch,
        Rwkv.RwkvLM.Arch,
        new("moe", "train a mixture-of-experts GPT (top-k routed GELU experts, load-balancing loss); defaults sized near the GPT CPU recipe",
            ["n-layer", "n-head", "n-embd", "dropout", "experts", "top-k"],
            new Dictionary<string, TrainConfig> { [DefaultPreset] = new TrainConfig { Arch = "moe", OutDir = "out-moe-char" } },
            typeof(Moe.MoeConfig),
            (c, vocab) => new Moe.MoeConfig(c.BlockSize, vocab, c.NLayer, c.NHead, c.NEmbd, c.Dropout, c.Experts, c.TopK, c.NEmbd),
            (config, init, device, dropoutSeed) => new Moe.MoeGpt((Moe.MoeConfig)config, init, device, dropoutSeed),
            c =>
            {
                if (c.NEmbd % c.NHead != 0) throw new UserErrorException($"--n-embd {c.NEmbd} must be a multiple of --n-head {c.NHead}");
                if (c.TopK > c.Experts) throw new UserErrorException($"--top-k {c.TopK} is larger than --experts {c.Experts}: each token can use at most every expert once");
            }),
        new("bitnet", "train a BitNet b1.58 GPT (ternary weights, 8-bit activations, straight-through training; sampling on packed TQ2_0 weights)",
            ["n-layer", "n-head", "n-embd", "dropout"],
            new Dictionary<string, TrainConfig> { [DefaultPreset] = new TrainConfig { Arch = "bitnet", OutDir = "out-bitnet-char" } },
            typeof(BitNet.BitNetConfig),
            (c, vocab) => new BitNet.BitNetConfig(c.BlockSize, vocab, c.NLayer, c.NHead, c.NEmbd, c.Dropout),
            (config, init, device, dropoutSeed) => new BitNet.BitNetGpt((BitNet.BitNetConfig)config, init, device, dropoutSeed),
            c =>
            {
                if (c.NEmbd % c.NHead != 0) throw new UserErrorException($"--n-embd {c.NEmbd} must be a multiple of --n-head {c.NHead}");
            }),
        new("retnet", "train a RetNet (multi-scale retention: parallel in training, recurrent in sampling); defaults sized near the GPT CPU recipe",
            ["n-layer", "n-head", "n-embd", "dropout"],
            new Dictionary<string, TrainConfig> { [DefaultPreset] = new TrainConfig { Arch = "retnet", OutDir = "out-retnet-char" } },
            typeof(RetNet.RetNetConfig),
            (c, vocab) => new RetNet.RetNetConfig(c.BlockSize, vocab, c.NLayer, c.NHead, c.NEmbd, c.Dropout),
            (config, init, device, dropoutSeed) => new RetNet.RetNetLM((RetNet.RetNetConfig)config, init, device, dropoutSeed),
            c =>
            {
                if (c.NEmbd % c.NHead != 0 || c.NEmbd / c.NHead % 2 != 0)
                    throw new UserErrorException($"--n-embd {c.NEmbd} / --n-head {c.NHead} must be an even whole number (retention rotates pairs of key channels)");
            }),
    ];

    public static IEnumerable<string> Names => All.Select(a => a.Name);

    /// <summary>The architecture called <paramref name="name"/>, or a user error listing the known ones.</summary>
    public static ArchDef Get(string name) =>
        All.FirstOrDefault(a => a.Name == name)
        ?? throw new UserErrorException($"unknown architecture '{name}': {string.Join(", ", Names)}");
}
