using System.Text.Json;

namespace ManagedTensor.Models.Data;

/// <summary>Builds the training tokenizers by kind and reads them back from a checkpoint's JSON.</summary>
public static class Tokenizers
{
    public static readonly string[] Kinds = ["char", "gpt2"];

    /// <summary>A tokenizer of <paramref name="kind"/>; the char tokenizer takes its vocabulary from <paramref name="text"/>.</summary>
    public static ITokenizer Create(string kind, string text) => kind switch
    {
        "char" => CharTokenizer.FromText(text),
        "gpt2" => Gpt2Tokenizer.FromDataFolder(),
        _ => throw new ArgumentException($"unknown tokenizer '{kind}' (known: {string.Join(", ", Kinds)})"),
    };

    /// <summary>Rebuilds a tokenizer from <see cref="ITokenizer.ToJson"/> output.</summary>
    public static ITokenizer FromJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"tokenizer JSON is {doc.RootElement.ValueKind}, expected an object with a \"kind\"");
        string? kind = doc.RootElement.TryGetProperty("kind", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString() : null;
        return kind switch
        {
            "char" => CharTokenizer.FromJson(doc.RootElement),
            "gpt2" => Gpt2Tokenizer.FromDataFolder(),
            _ => throw new InvalidDataException($"tokenizer JSON has unknown kind '{kind}' (known: {string.Join(", ", Kinds)})"),
        };
    }
}
