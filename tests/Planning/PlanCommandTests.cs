using ManagedTensor.Apps;
using Xunit;

namespace ManagedTensor.Tests.Planning;

/// <summary>`mt plan`: the table, the verdict against --memory, the suggestion, a config.json, and bad input named.</summary>
public class PlanCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = MtApp.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void A_plan_that_does_not_fit_suggests_the_cheapest_change()
    {
        var (code, text, _) = Run("plan", "--model", "llama-2-7b", "--recipe", "qlora:16", "--dtype", "bf16", "--seq", "2048", "--memory", "12GB");
        Assert.Equal(2, code);
        Assert.Contains("weights NF4", text);
        Assert.Contains("does not fit in 12.00 GiB", text);
        Assert.Contains("cheapest change that fits: ", text);

        (code, text, _) = Run("plan", "--model", "tinyllama-1.1b", "--recipe", "lora:16", "--dtype", "bf16", "--checkpointing", "--memory", "12GB");
        Assert.Equal(0, code);
        Assert.Contains("fits in 12.00 GiB", text);
    }

    [Fact]
    public void A_config_json_gives_the_shape()
    {
        string dir = Directory.CreateTempSubdirectory("mt-plan-").FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"),
            """{"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048}""");
        var fromFile = ManagedTensor.Models.Planning.ModelShape.Resolve(dir);
        var named = ManagedTensor.Models.Planning.ModelShape.Named["tinyllama-1.1b"];
        Assert.Equal(named with { Name = fromFile.Name }, fromFile);
        Assert.Equal(1_100_048_384, named.ParameterCount); // TinyLlama-1.1B's published count

        // stories260K's shape: its count in K, not "0B parameters".
        string small = Directory.CreateTempSubdirectory("mt-plan-").FullName;
        File.WriteAllText(Path.Combine(small, "config.json"),
            """{"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "tie_word_embeddings": true}""");
        var (smallCode, smallText, _) = Run("plan", "--model", small, "--recipe", "lora:8");
        Assert.Equal(0, smallCode);
        Assert.StartsWith($"{Path.GetFileName(small)}: 260K parameters (5 layers, width 64", smallText);

        var (code, _, err) = Run("plan", "--model", Path.Combine(dir, "missing.json"));
        Assert.Equal(1, code);
        Assert.Contains("missing.json", err);
        File.WriteAllText(Path.Combine(dir, "config.json"), """{"hidden_size": 64}""");
        (code, _, err) = Run("plan", "--model", dir);
        Assert.Equal(1, code);
        Assert.Contains("config.json has no integer 'num_attention_heads'", err);
    }

    [Theory]
    [InlineData("--recipe", "lora:0", "--recipe 'lora:0'")]
    [InlineData("--memory", "lots", "--memory 'lots'")]
    [InlineData("--dtype", "f8", "--dtype 'f8'")]
    [InlineData("--optim", "sgd", "--optim 'sgd'")]
    public void Bad_options_are_named(string option, string value, string expected)
    {
        var (code, _, err) = Run("plan", option, value);
        Assert.Equal(1, code);
        Assert.Contains(expected, err);
    }
}
