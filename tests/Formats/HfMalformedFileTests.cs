using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.Generation;
using Xunit;

namespace ManagedTensor.Tests.Formats;

/// <summary>
/// Corrupted copies of the Hugging Face fixtures (tests/fixtures/hf_llama): bad config.json values, broken
/// model.safetensors.index.json entries, truncated shards and shards whose headers disagree with the config, broken
/// tokenizer.json. Each must fail with <see cref="InvalidModelFileException"/> naming the file at fault, quickly and
/// without allocating for absurd sizes.
/// </summary>
public sealed class HfMalformedFileTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"mt-hf-bad-{Guid.NewGuid():N}");
    public HfMalformedFileTests() => Directory.CreateDirectory(_root);
    public void Dispose() => Directory.Delete(_root, true);

    private int _n;
    private const string Shard1 = "model-00001-of-00002.safetensors", Shard2 = "model-00002-of-00002.safetensors", Index = "model.safetensors.index.json";
    private const string L1Norm = "model.layers.1.input_layernorm.weight"; // (32) BF16, in shard 2

    private string Copy(string fixture)
    {
        string dir = Path.Combine(_root, $"v{_n++}");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.EnumerateFiles(HfLlamaTests.Dir(fixture)))
            if (!f.EndsWith("reference.json", StringComparison.Ordinal)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    /// <summary>Edits a copy of <paramref name="fixture"/> and checks that opening it fails, naming <paramref name="blamed"/> ("" = the directory).</summary>
    private void AssertRejected(string what, string fixture, Action<string> edit, string blamed)
    {
        string dir = Copy(fixture);
        edit(dir);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        var e = Record.Exception(() => ModelLoader.Open(dir));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(e is InvalidModelFileException, $"{what}: expected InvalidModelFileException, got {(e is null ? "no exception" : e.GetType().Name + ": " + e.Message)}");
        string path = blamed.Length == 0 ? dir : Path.Combine(dir, blamed);
        Assert.True(((InvalidModelFileException)e!).FilePath == path, $"{what}: blames {((InvalidModelFileException)e).FilePath}, expected {path}: {e.Message}");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"{what}: took {sw.Elapsed}");
        Assert.True(allocated < 64 << 20, $"{what}: allocated {allocated:N0} bytes");
    }

    private static void EditJson(string dir, string file, Action<JsonObject> edit)
    {
        string p = Path.Combine(dir, file);
        var node = JsonNode.Parse(File.ReadAllText(p))!.AsObject();
        edit(node);
        File.WriteAllText(p, node.ToJsonString());
    }

    private static Action<string> Config(Action<JsonObject> edit) => dir => EditJson(dir, "config.json", edit);
    private static Action<string> Set(string key, JsonNode? value) => Config(c => c[key] = value);

    /// <summary>Rewrites a safetensors header (the data section is kept byte for byte).</summary>
    private static void EditHeader(string path, Action<JsonObject> edit)
    {
        var bytes = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, n))!.AsObject();
        edit(header);
        var h = Encoding.UTF8.GetBytes(header.ToJsonString());
        var o = new byte[8 + h.Length + bytes.Length - 8 - n];
        BinaryPrimitives.WriteUInt64LittleEndian(o, (ulong)h.Length);
        h.CopyTo(o, 8);
        bytes.AsSpan(8 + n).CopyTo(o.AsSpan(8 + h.Length));
        File.WriteAllBytes(path, o);
    }

    private static Action<string> Tensor(string shard, string name, Action<JsonObject> edit) =>
        dir => EditHeader(Path.Combine(dir, shard), h => edit(h[name]!.AsObject()));

    [Fact]
    public void BadConfigJsonIsRejectedNamingTheKey()
    {
        int n0 = _n;
        const string B = "bf16_sharded", C = "config.json";
        AssertRejected("not JSON", B, d => File.WriteAllText(Path.Combine(d, C), "{\"hidden_size\": 32,"), C);
        AssertRejected("empty", B, d => File.WriteAllText(Path.Combine(d, C), ""), C);
        AssertRejected("top-level array", B, d => File.WriteAllText(Path.Combine(d, C), "[1, 2]"), C);
        AssertRejected("another architecture", B, Config(c => { c["architectures"] = new JsonArray("Qwen2ForCausalLM"); c["model_type"] = "qwen2"; }), C);
        foreach (var key in new[] { "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size" })
        {
            AssertRejected($"{key} missing", B, Config(c => c.Remove(key)), C);
            AssertRejected($"{key} null", B, Set(key, null), C);
            AssertRejected($"{key} a string", B, Set(key, "32"), C);
            AssertRejected($"{key} 0", B, Set(key, 0), C);
            AssertRejected($"{key} -1", B, Set(key, -1), C);
            AssertRejected($"{key} fractional", B, Set(key, 32.5), C);
            AssertRejected($"{key} 2^40", B, Set(key, 1L << 40), C);
        }
        AssertRejected("heads do not divide hidden_size", B, Set("num_attention_heads", 5), C);
        AssertRejected("heads above hidden_size", B, Set("num_attention_heads", 64), C);
        AssertRejected("kv heads do not divide heads", B, Set("num_key_value_heads", 3), C);
        AssertRejected("kv heads above heads", B, Set("num_key_value_heads", 8), C);
        AssertRejected("kv heads 0", B, Set("num_key_value_heads", 0), C);
        AssertRejected("odd head size", B, Config(c => { c["hidden_size"] = 36; c["num_attention_heads"] = 4; }), C);
        AssertRejected("head_dim differs", B, Set("head_dim", 16), C);
        AssertRejected("max_position_embeddings 0", B, Set("max_position_embeddings", 0), C);
        AssertRejected("rms_norm_eps 0", B, Set("rms_norm_eps", 0), C);
        AssertRejected("rms_norm_eps a string", B, Set("rms_norm_eps", "1e-5"), C);
        AssertRejected("rope_theta 1", B, Set("rope_theta", 1), C);
        AssertRejected("rope_scaling yarn", B, Config(c => c["rope_scaling"]!["rope_type"] = "yarn"), C);
        AssertRejected("rope_scaling without factor", B, Config(c => c["rope_scaling"]!.AsObject().Remove("factor")), C);
        AssertRejected("rope_scaling factor 0.5", B, Config(c => c["rope_scaling"]!["factor"] = 0.5), C);
        AssertRejected("rope_scaling low > high", B, Config(c => c["rope_scaling"]!["low_freq_factor"] = 8.0), C);
        AssertRejected("rope_scaling original 0", B, Config(c => c["rope_scaling"]!["original_max_position_embeddings"] = 0), C);
        AssertRejected("rope_scaling a number", B, Set("rope_scaling", 8), C);
        AssertRejected("hidden_act gelu", B, Set("hidden_act", "gelu"), C);
        AssertRejected("attention_bias", B, Set("attention_bias", true), C);
        AssertRejected("mlp_bias", B, Set("mlp_bias", true), C);
        AssertRejected("tie_word_embeddings a string", B, Set("tie_word_embeddings", "yes"), C);
        AssertRejected("eos_token_id a string", B, Set("eos_token_id", "</s>"), C);
        AssertRejected("config.json missing", B, d => File.Delete(Path.Combine(d, C)), C);
        Assert.True(_n - n0 >= 50, $"only {_n - n0} variants");
    }

    [Fact]
    public void ConfigThatDisagreesWithTheTensorsIsRejectedNamingTensorAndFile()
    {
        int n0 = _n;
        const string B = "bf16_sharded", F = "f16_tied";
        AssertRejected("vocab_size 304 vs embedding rows", B, Set("vocab_size", 304), Shard1);
        AssertRejected("intermediate_size 65 vs gate_proj", B, Set("intermediate_size", 65), Shard1);
        AssertRejected("kv heads 4 vs k_proj", B, Set("num_key_value_heads", 4), Shard1);
        AssertRejected("three layers: layer 2 missing", B, Set("num_hidden_layers", 3), Index);
        AssertRejected("one layer: layer 1 unused", B, Set("num_hidden_layers", 1), Index);
        AssertRejected("untied but no lm_head", F, Set("tie_word_embeddings", false), "model.safetensors");
        AssertRejected("hidden_size 64", F, Config(c => { c["hidden_size"] = 64; }), "model.safetensors");
        // Shard headers edited so the bytes still tile the data section: the loader, not the safetensors reader, must object.
        AssertRejected("norm stored as I8", B, Tensor(Shard2, L1Norm, t => { t["dtype"] = "I8"; t["shape"] = new JsonArray(64); }), Shard2);
        AssertRejected("norm stored as I32", B, Tensor(Shard2, L1Norm, t => { t["dtype"] = "I32"; t["shape"] = new JsonArray(16); }), Shard2);
        AssertRejected("norm shaped (16, 2)", B, Tensor(Shard2, L1Norm, t => t["shape"] = new JsonArray(16, 2)), Shard2);
        AssertRejected("norm stored as F64", B, Tensor(Shard2, L1Norm, t => { t["dtype"] = "F64"; t["shape"] = new JsonArray(8); }), Shard2);
        AssertRejected("lm_head transposed", B, Tensor(Shard1, "lm_head.weight", t => t["shape"] = new JsonArray(32, 305)), Shard1);
        AssertRejected("q_proj flattened", B, Tensor(Shard1, "model.layers.0.self_attn.q_proj.weight", t => t["shape"] = new JsonArray(1024)), Shard1);
        AssertRejected("embedding rows and columns swapped", F, Tensor("model.safetensors", "model.embed_tokens.weight", t => t["shape"] = new JsonArray(32, 512)), "model.safetensors");
        AssertRejected("unknown dtype", B, Tensor(Shard2, L1Norm, t => t["dtype"] = "Q4"), Shard2);
        AssertRejected("byte range too short for the shape", B, Tensor(Shard2, L1Norm, t => t["shape"] = new JsonArray(33)), Shard2);
        AssertRejected("extra tensor with a bias name", F, d =>
        {
            // Append a bias tensor: 32 F16 values after the existing data.
            string p = Path.Combine(d, "model.safetensors");
            var bytes = File.ReadAllBytes(p);
            int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            long dataLen = bytes.Length - 8 - n;
            EditHeader(p, h => h["model.layers.0.self_attn.q_proj.bias"] = new JsonObject { ["dtype"] = "F16", ["shape"] = new JsonArray(32), ["data_offsets"] = new JsonArray(dataLen, dataLen + 64) });
            File.AppendAllText(p, new string('\0', 64));
        }, "model.safetensors");
        Assert.True(_n - n0 >= 15, $"only {_n - n0} variants");
    }

    [Fact]
    public void BrokenIndexAndShardsAreRejectedNamingTheFile()
    {
        int n0 = _n;
        const string B = "bf16_sharded";
        Action<string> Index_(Action<JsonObject> edit) => d => EditJson(d, Index, edit);
        AssertRejected("index not JSON", B, d => File.WriteAllText(Path.Combine(d, Index), "{\"weight_map\": "), Index);
        AssertRejected("index an array", B, d => File.WriteAllText(Path.Combine(d, Index), "[]"), Index);
        AssertRejected("no weight_map", B, Index_(j => j.Remove("weight_map")), Index);
        AssertRejected("weight_map an array", B, Index_(j => j["weight_map"] = new JsonArray("a")), Index);
        AssertRejected("weight_map empty", B, Index_(j => j["weight_map"] = new JsonObject()), Index);
        AssertRejected("shard name a number", B, Index_(j => j["weight_map"]!["model.norm.weight"] = 2), Index);
        AssertRejected("shard name escapes the directory", B, Index_(j => j["weight_map"]!["model.norm.weight"] = "../" + Shard2), Index);
        AssertRejected("shard name in a sub-folder", B, Index_(j => j["weight_map"]!["model.norm.weight"] = "sub/" + Shard2), Index);
        AssertRejected("shard name empty", B, Index_(j => j["weight_map"]!["model.norm.weight"] = ""), Index);
        AssertRejected("shard that does not exist", B, Index_(j => j["weight_map"]!["model.norm.weight"] = "model-00003-of-00002.safetensors"), Index);
        AssertRejected("tensor mapped to the wrong shard", B, Index_(j => j["weight_map"]!["model.norm.weight"] = Shard2), Shard2);
        AssertRejected("tensor left out of the map", B, Index_(j => j["weight_map"]!.AsObject().Remove("model.norm.weight")), Index);
        AssertRejected("shard deleted", B, d => File.Delete(Path.Combine(d, Shard2)), Index);
        AssertRejected("no weights at all", B, d => File.Delete(Path.Combine(d, Index)), "");
        var good = File.ReadAllBytes(Path.Combine(HfLlamaTests.Dir(B), Shard2));
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(good);
        foreach (int cut in new[] { 0, 1, 7, 8, 9, 20, headerEnd / 2, headerEnd - 1, headerEnd, headerEnd + 1, headerEnd + 100, (headerEnd + good.Length) / 2, good.Length - 2, good.Length - 1 })
            AssertRejected($"shard 2 truncated at {cut}", B, d => File.WriteAllBytes(Path.Combine(d, Shard2), good.AsSpan(0, cut).ToArray()), Shard2);
        AssertRejected("shard 2 with a trailing byte", B, d => File.WriteAllBytes(Path.Combine(d, Shard2), [.. good, 0]), Shard2);
        AssertRejected("shard 2 header length 2^40", B, d => File.WriteAllBytes(Path.Combine(d, Shard2), With(good, b => BinaryPrimitives.WriteUInt64LittleEndian(b, 1UL << 40))), Shard2);
        AssertRejected("shard 2 header not JSON", B, d => File.WriteAllBytes(Path.Combine(d, Shard2), With(good, b => b[8] = (byte)'x')), Shard2);
        AssertRejected("shard 2 overlapping tensors", B, Tensor(Shard2, L1Norm, t => t["data_offsets"] = new JsonArray(0, 64)), Shard2);
        Assert.True(_n - n0 >= 30, $"only {_n - n0} variants");
    }

    private static byte[] With(byte[] src, Action<byte[]> edit)
    {
        var b = (byte[])src.Clone();
        edit(b);
        return b;
    }

    [Fact]
    public void BrokenTokenizerFilesAreRejectedNamingTheField()
    {
        int n0 = _n;
        const string F = "f16_tied", T = "tokenizer.json", TC = "tokenizer_config.json";
        Action<string> Tok(Action<JsonObject> edit) => d => EditJson(d, T, edit);
        JsonObject Model(JsonObject j) => j["model"]!.AsObject();
        AssertRejected("not JSON", F, d => File.WriteAllText(Path.Combine(d, T), "{"), T);
        AssertRejected("no model", F, Tok(j => j.Remove("model")), T);
        AssertRejected("WordPiece", F, Tok(j => Model(j)["type"] = "WordPiece"), T);
        AssertRejected("Unigram", F, Tok(j => Model(j)["type"] = "Unigram"), T);
        AssertRejected("vocab an array", F, Tok(j => Model(j)["vocab"] = new JsonArray("a")), T);
        AssertRejected("vocab id a string", F, Tok(j => Model(j)["vocab"]!["<unk>"] = "0"), T);
        AssertRejected("vocab id negative", F, Tok(j => Model(j)["vocab"]!["<unk>"] = -1), T);
        AssertRejected("two tokens share an id", F, Tok(j => Model(j)["vocab"]!["<s>"] = 0), T);
        AssertRejected("a gap in the ids", F, Tok(j => Model(j)["vocab"]!.AsObject().Remove("<0x41>")), T);
        AssertRejected("merge without a space", F, Tok(j => Model(j)["merges"]!.AsArray().Add("abc")), T);
        AssertRejected("merge of unknown tokens", F, Tok(j => Model(j)["merges"]!.AsArray().Add("zq xv")), T);
        AssertRejected("merge a number", F, Tok(j => Model(j)["merges"]!.AsArray().Add(5)), T);
        AssertRejected("merges an object", F, Tok(j => Model(j)["merges"] = new JsonObject()), T);
        AssertRejected("unk_token not in the vocabulary", F, Tok(j => Model(j)["unk_token"] = "<nope>"), T);
        AssertRejected("added token id outside", F, Tok(j => j["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 1 << 23, ["content"] = "<x>" })), T);
        AssertRejected("added token without content", F, Tok(j => j["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 5 })), T);
        AssertRejected("added token clashing with the vocabulary", F, Tok(j => j["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 300, ["content"] = "<x>" })), T);
        AssertRejected("normalizer Strip", F, Tok(j => j["normalizer"] = new JsonObject { ["type"] = "Strip" }), T);
        AssertRejected("normalizer without type", F, Tok(j => j["normalizer"] = new JsonObject()), T);
        AssertRejected("Replace with a regex", F, Tok(j => j["normalizer"] = new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["Regex"] = " +" }, ["content"] = "x" }), T);
        AssertRejected("pre_tokenizer Whitespace", F, Tok(j => j["pre_tokenizer"] = new JsonObject { ["type"] = "Whitespace" }), T);
        AssertRejected("Split Removed", F, Tok(j => j["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["String"] = " " }, ["behavior"] = "Removed" }), T);
        AssertRejected("Split with a bad regex", F, Tok(j => j["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "(" } }), T);
        AssertRejected("Metaspace scheme", F, Tok(j => j["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = "sometimes" }), T);
        AssertRejected("no tokenizer.json", F, d => File.Delete(Path.Combine(d, T)), "");
        AssertRejected("bos_token not in the vocabulary", F, d => EditJson(d, TC, j => j["bos_token"] = "<bos>"), TC);
        AssertRejected("eos_token a number", F, d => EditJson(d, TC, j => j["eos_token"] = 2), TC);
        AssertRejected("chat_template a number", F, d => EditJson(d, TC, j => j["chat_template"] = 5), TC);
        AssertRejected("tokenizer_config not JSON", F, d => File.WriteAllText(Path.Combine(d, TC), "{{"), TC);
        AssertRejected("tokenizer larger than the model", F, Tok(j => j["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = 512, ["content"] = "<extra>", ["special"] = true })), T);
        Assert.True(_n - n0 >= 30, $"only {_n - n0} variants");
    }
}
