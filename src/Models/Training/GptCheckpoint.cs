using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using ManagedTensor.Models.Data;
using ManagedTensor.Models.IO;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Training;

/// <summary>
/// A training checkpoint is one file, OUT/ckpt.safetensors, so that it is replaced atomically as a whole:
/// the model's parameters under their state-dict names, AdamW's moments under "optim.exp_avg.NAME" and
/// "optim.exp_avg_sq.NAME", and in the header metadata the model config, the training config, the
/// tokenizer and the <see cref="TrainState"/> as JSON. OUT/config.json repeats the configs and tokenizer
/// for people and other tools (also written atomically); loading reads only the safetensors file.
/// </summary>
public static class GptCheckpoint
{
    public const string FileName = "ckpt.safetensors";
    public const string ConfigFileName = "config.json";
    private const string OptimPrefix = "optim.";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    public static string PathIn(string outDir) => Path.Combine(outDir, FileName);

    public static void Save(string outDir, GPT model, AdamW optimizer, TrainConfig train, TrainState state, ITokenizer tokenizer)
    {
        var tensors = model.StateDict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value))
            .Concat(optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "managedtensor.gpt.v1",
            ["model_config"] = JsonSerializer.Serialize(model.Config, Json),
            ["train_config"] = JsonSerializer.Serialize(train, Json),
            ["train_state"] = JsonSerializer.Serialize(state, Json),
            ["tokenizer"] = tokenizer.ToJson(),
        };
        SafeTensors.Save(PathIn(outDir), tensors, metadata);
        var config = new JsonObject
        {
            ["model"] = JsonNode.Parse(metadata["model_config"]),
            ["tokenizer"] = JsonNode.Parse(metadata["tokenizer"]),
            ["train"] = JsonNode.Parse(metadata["train_config"]),
            ["iter"] = state.Iter,
            ["best_val_loss"] = double.IsFinite(state.BestValLoss) ? state.BestValLoss : null,
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, ConfigFileName), config.ToJsonString(Json));
    }

    /// <summary>What a checkpoint holds, opened and validated; the tensors are read on demand.</summary>
    public sealed class Loaded(SafeTensorsFile file, GptConfig model, TrainConfig train, TrainState state, ITokenizer tokenizer) : IDisposable
    {
        public SafeTensorsFile File { get; } = file;
        public GptConfig Model { get; } = model;
        public TrainConfig Train { get; } = train;
        public TrainState State { get; } = state;
        public ITokenizer Tokenizer { get; } = tokenizer;

        /// <summary>A GPT with the checkpoint's weights on <paramref name="device"/>.</summary>
        public GPT CreateModel(Device device)
        {
            var gpt = new GPT(Model, new Generator(0), device, Train.Seed + 2);
            gpt.LoadStateDict(ModelTensors(), source: File.Path);
            gpt.DropoutGenerator.Offset = State.DropoutOffset;
            return gpt;
        }

        public Dictionary<string, Tensor> ModelTensors() =>
            File.Tensors.Where(t => !t.Name.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(t => t.Name, t => File.Load(t.Name));

        public Dictionary<string, Tensor> OptimizerTensors() =>
            File.Tensors.Where(t => t.Name.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(t => t.Name[OptimPrefix.Length..], t => File.Load(t.Name));

        public void Dispose() => File.Dispose();
    }

    /// <summary>Opens OUT/ckpt.safetensors (or a path to such a file) and parses its metadata, with errors naming the file.</summary>
    public static Loaded Load(string outDirOrFile)
    {
        string path = File.Exists(outDirOrFile) ? outDirOrFile : PathIn(outDirOrFile);
        if (!File.Exists(path))
            throw new FileNotFoundException($"no checkpoint at {path}: train first (mt train gpt --out-dir {outDirOrFile})", path);
        var file = SafeTensors.Open(path);
        try
        {
            string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v
                : throw new InvalidDataException($"{path}: not a ManagedTensor GPT checkpoint (metadata '{key}' missing)");
            if (Meta("format") != "managedtensor.gpt.v1") throw new InvalidDataException($"{path}: unknown checkpoint format '{Meta("format")}'");
            T Parse<T>(string key) => JsonSerializer.Deserialize<T>(Meta(key), Json)
                ?? throw new InvalidDataException($"{path}: metadata '{key}' is empty");
            var model = Parse<GptConfig>("model_config");
            model.Validate();
            return new Loaded(file, model, Parse<TrainConfig>("train_config"), Parse<TrainState>("train_state"), Data.Tokenizers.FromJson(Meta("tokenizer")));
        }
        catch (JsonException e)
        {
            file.Dispose();
            throw new InvalidDataException($"{path}: bad checkpoint metadata: {e.Message}", e);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}
