using System.Text.Json;
using ManagedTensor.Models.IO;

namespace ManagedTensor.Models.Diffusion;

/// <summary>
/// OUT/diffusion.safetensors: the denoiser's weights under their own names, AdamW's moments under "optim.", the EMA
/// under "ema.", and in the metadata the model config, the training config and the state (step, generator offsets,
/// history) as JSON. Every field is checked when read, and errors name the file.
/// </summary>
public sealed class DiffusionCheckpoint
{
    private static readonly JsonSerializerOptions Json = new() { IncludeFields = false };

    private DiffusionCheckpoint(string path, DiffusionConfig model, DiffusionTrainConfig train, DiffusionState state, Dictionary<string, Tensor> tensors)
    {
        (Path, Model, Train, State, _tensors) = (path, model, train, state, tensors);
    }

    private readonly Dictionary<string, Tensor> _tensors;
    public string Path { get; }
    public DiffusionConfig Model { get; }
    public DiffusionTrainConfig Train { get; }
    public DiffusionState State { get; }

    public static void Save(string path, DiffusionConfig model, DiffusionTrainConfig train, DiffusionState state, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        var meta = new Dictionary<string, string>
        {
            ["format"] = DiffusionTrainer.Format,
            ["model_config"] = JsonSerializer.Serialize(model, Json),
            ["train_config"] = JsonSerializer.Serialize(train, Json),
            ["train_state"] = JsonSerializer.Serialize(state, Json),
        };
        SafeTensors.Save(path, tensors, meta);
    }

    /// <summary>Opens OUT/diffusion.safetensors (or that file given directly).</summary>
    public static DiffusionCheckpoint Load(string outDirOrFile)
    {
        string path = File.Exists(outDirOrFile) ? outDirOrFile : DiffusionTrainer.PathIn(outDirOrFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"no diffusion checkpoint at {path}: train first (mt diffuse train --out-dir {outDirOrFile})", path);
        using var file = SafeTensors.Open(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"{path}: not a ManagedTensor diffusion checkpoint (metadata '{key}' missing)");
        if (Meta("format") != DiffusionTrainer.Format) throw new InvalidDataException($"{path}: checkpoint format '{Meta("format")}', expected '{DiffusionTrainer.Format}'");
        T Parse<T>(string key)
        {
            try
            {
                return JsonSerializer.Deserialize<T>(Meta(key), Json) ?? throw new InvalidDataException($"{path}: metadata '{key}' is null");
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: metadata '{key}' is not a valid {typeof(T).Name} ({e.Message})", e);
            }
        }
        var model = Parse<DiffusionConfig>("model_config");
        var train = Parse<DiffusionTrainConfig>("train_config");
        var state = Parse<DiffusionState>("train_state");
        try
        {
            model.Validate();
            train.Validate();
        }
        catch (UserErrorException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
        if (state.Step < 0 || state.History is null) throw new InvalidDataException($"{path}: train_state has step {state.Step}{(state.History is null ? " and no history" : "")}");
        return new DiffusionCheckpoint(path, model, train, state, file.LoadAll());
    }

    /// <summary>The tensors whose names start with <paramref name="prefix"/>, the prefix removed unless <paramref name="keepPrefix"/>.</summary>
    public Dictionary<string, Tensor> Tensors(string prefix, bool keepPrefix = false) =>
        _tensors.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(kv => keepPrefix ? kv.Key : kv.Key[prefix.Length..], kv => kv.Value);

    /// <summary>
    /// Copies the weights into <paramref name="net"/>: the trained weights, or with <paramref name="ema"/> their moving
    /// average (what sampling uses). <paramref name="stripPrefixes"/>: ignore the optimizer and EMA entries.
    /// </summary>
    public void LoadInto(Denoiser net, bool ema = false, bool stripPrefixes = true)
    {
        try
        {
            if (ema) net.LoadStateDict(Tensors("ema."), strict: true, source: Path);
            else net.LoadStateDict(_tensors, strict: true, source: Path, ignorePrefixes: ["optim.", "ema."]);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
    }

    /// <summary>The run's denoiser with fresh weights, LoRA adapters attached if the run has them: what its tensors load into.</summary>
    public Denoiser CreateDenoiser(Device device)
    {
        var net = Denoiser.Create(Model, new Generator(0), device);
        if (Train.LoraRank > 0) DiffusionLora.Attach(net, Train, new Generator(0));
        return net;
    }

    /// <summary>The model from a checkpoint, EMA weights, eval mode (for sampling and evaluation).</summary>
    public static Denoiser LoadModel(string outDirOrFile, Device device, bool ema = true)
    {
        var ck = Load(outDirOrFile);
        var net = ck.CreateDenoiser(device);
        ck.LoadInto(net, ema);
        net.Eval();
        return net;
    }
}
