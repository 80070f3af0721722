using System.Text.Json;
using ManagedTensor.Models.IO;
using ManagedTensor.Optim;

namespace ManagedTensor.Models.Detection.Yolo;

/// <summary>What a detector run is: the data, the model size and the training recipe. Saved in every checkpoint.</summary>
public sealed record YoloTrainConfig(
    string Data, string Model = "yolov8n", int Epochs = 30, int ImgSz = 128, int Batch = 16, double Lr = 0.002,
    double WeightDecay = 0.0005, int WarmupIters = 60, double FinalLrFraction = 0.01, int Seed = 0, string OutDir = "detect-run")
{
    public void Validate()
    {
        if (!YoloConfig.Sizes.Contains(Model)) throw new ArgumentException($"--model {Model}: expected one of {string.Join(", ", YoloConfig.Sizes)}");
        if (ImgSz < 32 || ImgSz % 32 != 0) throw new ArgumentException($"--imgsz {ImgSz}: must be a positive multiple of 32");
        if (Epochs < 1 || Batch < 1 || WarmupIters < 0) throw new ArgumentException($"--epochs {Epochs}, --batch {Batch}: must be at least 1");
        if (!(Lr > 0) || !(WeightDecay >= 0) || FinalLrFraction is <= 0 or > 1) throw new ArgumentException($"--lr {Lr}, weight decay {WeightDecay}: out of range");
    }
}

/// <summary>One epoch's mean losses and the validation mAP after it.</summary>
public sealed record YoloEpochLog(int Epoch, double Box, double Cls, double Dfl, double Map50, double Map50To95);

/// <summary>Where a run stands after <see cref="Epochs"/> complete epochs (what --resume continues from).</summary>
public sealed record YoloTrainState(int Epochs, int Steps, double BestMap50To95, List<YoloEpochLog> History);

/// <summary>
/// A detector checkpoint: one safetensors file with the model's state dict (Ultralytics' parameter names), AdamW's
/// moments under "optim.*" (training checkpoints only), and metadata: format "managedtensor.yolo.v1", the model size,
/// the class names, the image size, the training config and state as JSON. OUT/last.safetensors is the end of the
/// last epoch (what --resume reads), OUT/best.safetensors the epoch with the best mAP@0.5:0.95 so far.
/// </summary>
public static class YoloCheckpoint
{
    public const string Format = "managedtensor.yolo.v1";
    public const string LastFileName = "last.safetensors", BestFileName = "best.safetensors";
    private const string OptimPrefix = "optim.";
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static void Save(string path, YoloV8 model, IReadOnlyList<string> names, YoloTrainConfig train, YoloTrainState state, AdamW? optimizer)
    {
        var tensors = model.StateDict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value));
        if (optimizer is not null) tensors = tensors.Concat(optimizer.StateTensors().Select(kv => new KeyValuePair<string, Tensor>(OptimPrefix + kv.Key, kv.Value)));
        SafeTensors.Save(path, tensors, new Dictionary<string, string>
        {
            ["format"] = Format,
            ["model"] = model.Config.Name,
            ["names"] = JsonSerializer.Serialize(names),
            ["imgsz"] = train.ImgSz.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["train_config"] = JsonSerializer.Serialize(train, Json),
            ["train_state"] = JsonSerializer.Serialize(state, Json),
        });
    }

    /// <summary>An opened checkpoint: the model (eval mode, on <paramref name="device"/>) and what the run recorded.</summary>
    public sealed record Loaded(YoloV8 Model, IReadOnlyList<string> Names, YoloTrainConfig Train, YoloTrainState State, Dictionary<string, Tensor> Optimizer);

    public static Loaded Load(string path, Device device)
    {
        if (Directory.Exists(path)) path = File.Exists(Path.Combine(path, BestFileName)) ? Path.Combine(path, BestFileName) : Path.Combine(path, LastFileName);
        if (!File.Exists(path)) throw new UserErrorException($"{path}: no such checkpoint (train one with mt detect train --out DIR)");
        using var file = SafeTensors.Open(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v
            : throw new UserErrorException($"{path}: not a YOLO checkpoint of mt detect train (metadata '{key}' missing{(file.Metadata.TryGetValue("arch", out var a) ? $"; it is a '{a}' language-model checkpoint" : "")})");
        if (Meta("format") != Format) throw new UserErrorException($"{path}: checkpoint format '{Meta("format")}', expected {Format}");
        T Parse<T>(string key)
        {
            try
            {
                return JsonSerializer.Deserialize<T>(Meta(key), Json) ?? throw new UserErrorException($"{path}: metadata '{key}' is null");
            }
            catch (JsonException e)
            {
                throw new UserErrorException($"{path}: metadata '{key}' is not valid ({e.Message})", e);
            }
        }
        var names = Parse<List<string>>("names");
        var train = Parse<YoloTrainConfig>("train_config");
        var state = Parse<YoloTrainState>("train_state");
        try
        {
            train.Validate();
            var model = new YoloV8(YoloConfig.For(Meta("model"), names.Count), new Generator(0), device);
            var all = file.Tensors.ToDictionary(t => t.Name, t => file.Load(t.Name));
            model.LoadStateDict(all, source: path, ignorePrefixes: [OptimPrefix]);
            model.Eval();
            var optim = all.Where(kv => kv.Key.StartsWith(OptimPrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[OptimPrefix.Length..], kv => kv.Value);
            return new Loaded(model, names, train, state, optim);
        }
        catch (ArgumentException e)
        {
            throw new UserErrorException($"{path}: {e.Message}", e);
        }
    }
}
