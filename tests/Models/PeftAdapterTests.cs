using System.Text.Json;
using ManagedTensor.Models;
using ManagedTensor.Models.Adapters;
using ManagedTensor.Models.IO;
using ManagedTensor.Nn;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// PEFT-layout adapters against tests/fixtures/lora (make_lora_fixture.py: a tiny random Llama, an adapter written with
/// PEFT's key names by hand, and the logits of base + adapter from an independent torch forward).
/// </summary>
public class PeftAdapterTests
{
    private static string Fixture(params string[] parts) => RepoPaths.Of(["tests", "fixtures", "lora", .. parts]);

    private static (ManagedTensor.Models.Llama Model, long[] Ids, double[] Logits) Base(int hiddenDim = 0)
    {
        var e = JsonDocument.Parse(File.ReadAllText(Fixture("expected.json"))).RootElement;
        int I(string k) => e.GetProperty(k).GetInt32();
        var config = new LlamaConfig(I("dim"), hiddenDim > 0 ? hiddenDim : I("hidden_dim"), I("n_layers"), I("n_heads"), I("n_kv_heads"), I("vocab_size"), I("seq_len"), Rope: RopeLayout.HalfSplit);
        var weights = SafeTensors.Load(Fixture("base", "model.safetensors"));
        var model = hiddenDim > 0 ? ManagedTensor.Models.Llama.Create(config, new Generator(1)) : new ManagedTensor.Models.Llama(config, weights);
        var ids = e.GetProperty("ids").EnumerateArray().Select(v => v.GetInt64()).ToArray();
        var logits = e.GetProperty("logits").EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetDouble())).ToArray();
        return (model, ids, logits);
    }

    private static double[] Logits(ManagedTensor.Models.Llama m, long[] ids)
    {
        using var noGrad = GradMode.NoGrad();
        m.Eval(); // adapters' dropout off
        return m.Forward(Tensor.FromArray(ids, [1, ids.Length]), cache: null, allPositions: true).ToDoubleArray();
    }

    [Fact]
    public void A_peft_adapter_made_in_python_loads_by_key_name_and_gives_its_logits_unmerged_and_merged()
    {
        var (model, ids, expected) = Base();
        var baseLogits = Logits(model, ids);
        var config = PeftAdapter.Load(Fixture("adapter"), model);
        Assert.Equal((4, 8.0, 0.05), (config.Rank, config.Alpha, config.Dropout));
        Assert.Equal(6, Lora.Adapted(model).Count); // q_proj, v_proj, down_proj in 2 layers
        model.Eval();
        Assert.True(baseLogits.Zip(expected).Max(p => Math.Abs(p.First - p.Second)) > 1e-2, "the adapter must change the logits");
        TestUtil.AssertClose(expected, Logits(model, ids), 1e-4, 1e-4, "base + adapter");
        Lora.Merge(model);
        TestUtil.AssertClose(expected, Logits(model, ids), 1e-4, 1e-4, "merged");
    }

    [Fact]
    public void Saved_adapters_have_pefts_files_and_keys_and_load_back()
    {
        var (model, ids, _) = Base();
        PeftAdapter.Load(Fixture("adapter"), model);
        string dir = Path.Combine(Path.GetTempPath(), "mt-peft-" + Guid.NewGuid().ToString("N"));
        try
        {
            PeftAdapter.Save(dir, model, new LoraConfig(4, 8, 0.05, ["q_proj", "v_proj", "down_proj"]), "tiny-random-llama");
            var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, PeftAdapter.ConfigFile))).RootElement;
            Assert.Equal("LORA", cfg.GetProperty("peft_type").GetString());
            Assert.Equal("CAUSAL_LM", cfg.GetProperty("task_type").GetString());
            Assert.Equal(4, cfg.GetProperty("r").GetInt32());
            var ours = SafeTensors.Load(Path.Combine(dir, PeftAdapter.WeightsFile));
            var theirs = SafeTensors.Load(Fixture("adapter", "adapter_model.safetensors"));
            Assert.Equal(theirs.Keys.Order(), ours.Keys.Order());
            Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", ours.Keys);
            foreach (var k in theirs.Keys) Assert.Equal(theirs[k].ToDoubleArray(), ours[k].ToDoubleArray());
            var (fresh, _, expected) = Base();
            PeftAdapter.Load(dir, fresh);
            TestUtil.AssertClose(expected, Logits(fresh, ids), 1e-4, 1e-4, "reloaded");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void An_adapter_for_another_base_names_the_tensor_and_both_shapes()
    {
        var (other, _, _) = Base(hiddenDim: 64); // down_proj is 64 wide here, 48 in the adapter's base
        var e = Assert.Throws<InvalidDataException>(() => PeftAdapter.Load(Fixture("adapter"), other));
        Assert.Contains("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", e.Message);
        Assert.Contains("[4, 48]", e.Message);
        Assert.Contains("[4, 64]", e.Message);
        Assert.Contains("another base", e.Message);
    }
}
