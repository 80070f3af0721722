using System.Text.Json;
using ManagedTensor.Models.IO;
using ManagedTensor.Nn;

namespace ManagedTensor.Models.Vision;

/// <summary>The classifier's shape: two conv blocks of <see cref="Width"/> and 2 * Width channels, a hidden layer of <see cref="Hidden"/>.</summary>
public sealed record ClassifierConfig(int Width = 32, int Hidden = 128, int Classes = 10, int Side = 28)
{
    public void Validate()
    {
        if (Width < 1 || Hidden < 1 || Classes < 2) throw new ArgumentException($"classifier config {this}: width, hidden must be >= 1 and classes >= 2");
        if (Side % 4 != 0) throw new ArgumentException($"classifier config {this}: side {Side} must be a multiple of 4 (two 2x2 poolings)");
    }
}

/// <summary>
/// A small CNN for 28x28 grayscale images (Fashion-MNIST), the classic two-block shape:
///   (B, 1, 28, 28) -> conv3x3(W) BN ReLU maxpool2 -> (B, W, 14, 14) -> conv3x3(2W) BN ReLU maxpool2 -> (B, 2W, 7, 7)
///   -> flatten -> linear(hidden) ReLU -> features (B, hidden) -> linear(classes) -> logits.
/// Inputs are pixels mapped to [-1, 1] (the range the diffusion models generate in, so their samples are
/// classified as they come). <see cref="Features"/>, the hidden layer, is what the classifier FID compares.
/// </summary>
public sealed class FashionClassifier : Module
{
    public const string Format = "managedtensor.classifier.v1";
    public const string FileName = "classifier.safetensors";

    public FashionClassifier(ClassifierConfig config, Generator gen, Device device)
    {
        config.Validate();
        Config = config;
        int w = config.Width, flat = 2 * w * (config.Side / 4) * (config.Side / 4);
        Conv1 = Child("conv1", new Conv2d(1, w, 3, gen, device, bias: false));
        Bn1 = Child("bn1", new BatchNorm2d(w, device));
        Conv2 = Child("conv2", new Conv2d(w, 2 * w, 3, gen, device, bias: false));
        Bn2 = Child("bn2", new BatchNorm2d(2 * w, device));
        Fc1 = Child("fc1", new Linear(flat, config.Hidden, bias: true, gen, device));
        Fc2 = Child("fc2", new Linear(config.Hidden, config.Classes, bias: true, gen, device));
    }

    public ClassifierConfig Config { get; }
    public Conv2d Conv1 { get; }
    public BatchNorm2d Bn1 { get; }
    public Conv2d Conv2 { get; }
    public BatchNorm2d Bn2 { get; }
    public Linear Fc1 { get; }
    public Linear Fc2 { get; }

    /// <summary>The penultimate layer: (B, 1, S, S) -> (B, hidden).</summary>
    public Tensor Features(Tensor x)
    {
        if (x.Rank != 4 || x.Shape[1] != 1 || x.Shape[2] != Config.Side || x.Shape[3] != Config.Side)
            throw new ArgumentException($"classifier: input {x.Describe()} must be (B, 1, {Config.Side}, {Config.Side})");
        var h = Bn1.Forward(Conv1.Forward(x)).Relu().MaxPool2d(2);   // (B, W, S/2, S/2)
        h = Bn2.Forward(Conv2.Forward(h)).Relu().MaxPool2d(2);       // (B, 2W, S/4, S/4)
        return Fc1.Forward(h.Reshape(x.Shape[0], -1)).Relu();        // (B, hidden)
    }

    public Tensor Forward(Tensor x) => Fc2.Forward(Features(x));     // (B, classes) logits

    /// <summary>Class ids of a batch (eval mode, no gradients).</summary>
    public int[] Predict(Tensor x)
    {
        using var noGrad = GradMode.NoGrad();
        return Forward(x).ArgMax(-1).ToDoubleArray().Select(v => (int)v).ToArray();
    }

    /// <summary>Writes the weights and running statistics with the config in the metadata (atomically).</summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? extra = null)
    {
        var meta = new Dictionary<string, string> { ["format"] = Format, ["config"] = JsonSerializer.Serialize(Config) };
        if (extra is not null) foreach (var (k, v) in extra) meta[k] = v;
        SafeTensors.Save(path, StateDict(), meta);
    }

    /// <summary>Reads a classifier written by <see cref="Save"/> (a file, or a folder holding classifier.safetensors).</summary>
    public static FashionClassifier Load(string fileOrDir, Device device)
    {
        string path = Directory.Exists(fileOrDir) ? Path.Combine(fileOrDir, FileName) : fileOrDir;
        if (!File.Exists(path)) throw new FileNotFoundException($"no classifier at {path}: train one first (mt classify train --out-dir DIR)", path);
        using var file = SafeTensors.Open(path);
        if (!file.Metadata.TryGetValue("format", out var f) || f != Format)
            throw new InvalidDataException($"{path}: not a ManagedTensor classifier (metadata 'format' is {(f is null ? "missing" : $"'{f}'")}, expected '{Format}')");
        ClassifierConfig config;
        try
        {
            config = JsonSerializer.Deserialize<ClassifierConfig>(file.Metadata.GetValueOrDefault("config") ?? "null")
                ?? throw new InvalidDataException($"{path}: metadata 'config' is missing");
            config.Validate();
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: metadata 'config' is not a valid classifier config ({e.Message})", e);
        }
        var model = new FashionClassifier(config, new Generator(0), device);
        try
        {
            model.LoadStateDict(file.LoadAll(), source: path);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
        model.Eval();
        return model;
    }
}
