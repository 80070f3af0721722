using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using ManagedTensor.Models.Formats;

namespace ManagedTensor.Models.Tokenizers;

/// <summary>A checkpoint's tokenizer and what tokenizer_config.json says about chat: the template and the BOS/EOS strings.</summary>
public sealed record HfTokenizerFiles(BpeTokenizer Tokenizer, string? ChatTemplate);

/// <summary>
/// Reads a Hugging Face tokenizer.json (tokenizers' serialization) into a <see cref="BpeTokenizer"/>, with
/// tokenizer_config.json (bos_token, eos_token, add_bos_token, chat_template) when present. Supported:
///   model        BPE (vocab, merges as "a b" strings or [a, b] pairs, byte_fallback, unk_token, fuse_unk, ignore_merges)
///   normalizer   null, Sequence, Prepend, Replace (String patterns), NFC/NFD/NFKC/NFKD, Lowercase
///   pre_tokenizer null, Sequence, Split (Regex or String pattern, behavior Isolated), ByteLevel, Metaspace
///   post_processor TemplateProcessing (whether BOS leads a prompt), ByteLevel, Sequence; decoder: read from the pieces above
/// This covers GPT-2, Llama 3, Qwen2, SmolLM (byte-level) and Llama 2, Mistral, TinyLlama (sentencepiece-style BPE).
/// Not supported, with an error naming the field: WordPiece, Unigram and WordLevel models (BERT, T5), other normalizers
/// and pre-tokenizers, and tokenizer.model (a sentencepiece protobuf) when there is no tokenizer.json.
/// </summary>
public static class HfTokenizer
{
    public const string TokenizerFile = "tokenizer.json", ConfigFile = "tokenizer_config.json";

    /// <summary>Loads the tokenizer of checkpoint directory <paramref name="dir"/>; <paramref name="bosId"/>/<paramref name="eosId"/> (from config.json) are fallbacks.</summary>
    public static HfTokenizerFiles Load(string dir, int bosId = -1, int eosId = -1)
    {
        string path = Path.Combine(dir, TokenizerFile);
        if (!File.Exists(path))
            throw new InvalidModelFileException(dir, File.Exists(Path.Combine(dir, "tokenizer.model"))
                ? "no tokenizer.json; tokenizer.model (a sentencepiece protobuf) is not read: convert it to tokenizer.json (transformers' AutoTokenizer.save_pretrained writes one)"
                : "no tokenizer.json in the checkpoint directory");
        string cfgPath = Path.Combine(dir, ConfigFile);
        var cfg = File.Exists(cfgPath) ? HfJson.Load(cfgPath) : null;
        var tok = Parse(HfJson.Load(path), cfg, bosId, eosId);
        return new HfTokenizerFiles(tok, cfg is null ? null : ChatTemplate(cfg));
    }

    /// <summary>tokenizer_config.json's chat_template: a string, or a list of {name, template} (the one named "default", else the first).</summary>
    public static string? ChatTemplate(HfJson cfg)
    {
        if (cfg.Get("chat_template") is not { } t) return null;
        if (t.ValueKind == JsonValueKind.String) return t.GetString();
        if (t.ValueKind == JsonValueKind.Array)
        {
            var named = t.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("template", out var x) && x.ValueKind == JsonValueKind.String).ToList();
            var pick = named.FirstOrDefault(e => e.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default");
            if (pick.ValueKind == JsonValueKind.Undefined && named.Count > 0) pick = named[0];
            if (pick.ValueKind == JsonValueKind.Object) return pick.GetProperty("template").GetString();
        }
        throw cfg.Error("'chat_template' must be a string or a list of {\"name\", \"template\"} objects");
    }

    public static BpeTokenizer Parse(HfJson j, HfJson? cfg, int bosId = -1, int eosId = -1)
    {
        var model = j.GetObject("model") ?? throw j.Error("'model' is missing");
        string type = model.GetString("type") ?? (model.Has("merges") ? "BPE" : "");
        if (type != "BPE") throw j.Error($"'model.type' is '{type}'; only BPE tokenizers are supported (not WordPiece, Unigram or WordLevel)");

        // Vocabulary: token -> id, ids dense from 0 (added tokens may extend it).
        var vocabEl = model.Get("vocab") is { ValueKind: JsonValueKind.Object } v ? v : throw j.Error("'model.vocab' is missing or not an object of token -> id");
        var byId = new Dictionary<int, string>();
        foreach (var e in vocabEl.EnumerateObject())
        {
            int id = model.AsInt("vocab." + e.Name, e.Value);
            if (id < 0 || id >= 1 << 22) throw j.Error($"model.vocab['{e.Name}'] = {id} is outside [0, 2^22)");
            if (!byId.TryAdd(id, e.Name)) throw j.Error($"model.vocab: id {id} is given to both '{byId[id]}' and '{e.Name}'");
        }
        var added = new List<(string, int, bool)>();
        if (j.Get("added_tokens") is { } at)
        {
            if (at.ValueKind != JsonValueKind.Array) throw j.Error("'added_tokens' must be an array");
            foreach (var e in at.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("id", out var idEl) || !e.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                    throw j.Error($"added_tokens entry {e.GetRawText()} needs an integer 'id' and a string 'content'");
                int id = j.AsInt("added_tokens.id", idEl);
                if (id < 0 || id >= 1 << 22) throw j.Error($"added token '{c.GetString()}' has id {id}, outside [0, 2^22)");
                if (byId.TryGetValue(id, out var existing) && existing != c.GetString())
                    throw j.Error($"added token '{c.GetString()}' has id {id}, which model.vocab gives to '{existing}'");
                byId[id] = c.GetString()!;
                bool special = e.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
                added.Add((c.GetString()!, id, special));
            }
        }
        if (byId.Count == 0) throw j.Error("the vocabulary is empty");
        int n = byId.Keys.Max() + 1;
        var tokens = new string[n];
        for (int i = 0; i < n; i++)
            tokens[i] = byId.TryGetValue(i, out var t) ? t : throw j.Error($"token id {i} is missing: ids must run from 0 to {n - 1} without gaps");

        var merges = ParseMerges(j, model);
        var normalizers = new List<TextNormalizer>();
        ParseNormalizer(j, j.Get("normalizer"), normalizers);
        var pre = new List<PreTokenizer>();
        ParsePreTokenizer(j, j.Get("pre_tokenizer"), pre);
        bool byteLevel = pre.Any(p => p is PreTokenizer.ByteLevel) || DecoderHas(j.Get("decoder"), "ByteLevel");
        char? marker = pre.OfType<PreTokenizer.Metaspace>().Select(m => (char?)m.Replacement).FirstOrDefault()
            ?? (normalizers.OfType<TextNormalizer.Replace>().Any(r => r.Pattern == " " && r.Content == "\u2581") ? '\u2581' : null);
        bool strip = DecoderHas(j.Get("decoder"), "Strip") || pre.OfType<PreTokenizer.Metaspace>().Any(m => m.Prepend != MetaspacePrepend.Never);

        string? unk = model.GetString("unk_token");
        int unkId = unk is null ? -1 : Array.IndexOf(tokens, unk);
        if (unk is not null && unkId < 0) throw j.Error($"model.unk_token '{unk}' is not in the vocabulary");

        // BOS/EOS: tokenizer_config.json's strings, else the ids config.json gives, else the post-processor's leading special token.
        string? processorBos = ProcessorBos(j.Get("post_processor"));
        int bos = TokenOf(cfg, "bos_token", tokens) ?? (bosId >= 0 && bosId < n ? bosId : processorBos is null ? -1 : Array.IndexOf(tokens, processorBos));
        int eos = TokenOf(cfg, "eos_token", tokens) ?? (eosId >= 0 && eosId < n ? eosId : -1);
        bool addBos = cfg is not null && cfg.Has("add_bos_token") ? cfg.GetBool("add_bos_token", false) : processorBos is not null;

        try
        {
            return new BpeTokenizer(new BpeModel
            {
                Tokens = tokens,
                Merges = merges,
                Added = added,
                Normalizers = normalizers,
                PreTokenizers = pre,
                ByteLevel = byteLevel,
                ByteFallback = model.GetBool("byte_fallback", false),
                IgnoreMerges = model.GetBool("ignore_merges", false),
                Unk = unkId,
                FuseUnk = model.GetBool("fuse_unk", false),
                SpaceMarker = byteLevel ? null : marker,
                StripLeadingSpace = strip && !byteLevel,
                Bos = bos,
                Eos = eos,
                AddBos = addBos,
            });
        }
        catch (ArgumentException e) { throw j.Error(e.Message); }
    }

    private static (string, string)[] ParseMerges(HfJson j, HfJson model)
    {
        if (model.Get("merges") is not { } m) return [];
        if (m.ValueKind != JsonValueKind.Array) throw j.Error("'model.merges' must be an array");
        var merges = new List<(string, string)>();
        int i = 0;
        foreach (var e in m.EnumerateArray())
        {
            if (e.ValueKind == JsonValueKind.String)
            {
                string s = e.GetString()!;
                int sp = s.IndexOf(' ');
                if (sp <= 0 || sp == s.Length - 1 || s.IndexOf(' ', sp + 1) >= 0) throw j.Error($"model.merges[{i}] = \"{s}\" is not two tokens separated by one space");
                merges.Add((s[..sp], s[(sp + 1)..]));
            }
            else if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 2 && e[0].ValueKind == JsonValueKind.String && e[1].ValueKind == JsonValueKind.String)
                merges.Add((e[0].GetString()!, e[1].GetString()!));
            else throw j.Error($"model.merges[{i}] = {e.GetRawText()} must be \"a b\" or [\"a\", \"b\"]");
            i++;
        }
        return merges.ToArray();
    }

    private static string TypeOf(HfJson j, JsonElement e, string field) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()! : throw j.Error($"'{field}' entry {Short(e)} has no string \"type\"");

    private static string Short(JsonElement e) { string s = e.GetRawText(); return s.Length > 80 ? s[..80] + "..." : s; }

    private static string Str(HfJson j, JsonElement e, string key, string field) =>
        e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw j.Error($"'{field}' {Short(e)} needs a string '{key}'");

    private static bool Flag(JsonElement e, string key, bool fallback) =>
        e.TryGetProperty(key, out var v) ? v.ValueKind == JsonValueKind.True || (v.ValueKind != JsonValueKind.False && fallback) : fallback;

    /// <summary>A {"String": s} or {"Regex": r} pattern as a regex (strings escaped).</summary>
    private static Regex Pattern(HfJson j, JsonElement e, string field)
    {
        if (!e.TryGetProperty("pattern", out var p) || p.ValueKind != JsonValueKind.Object) throw j.Error($"'{field}' {Short(e)} needs a 'pattern' object");
        try
        {
            if (p.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String) return new Regex(r.GetString()!, RegexOptions.Compiled);
            if (p.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String) return new Regex(Regex.Escape(s.GetString()!), RegexOptions.Compiled);
        }
        catch (ArgumentException ex) { throw j.Error($"'{field}' pattern {Short(p)} is not a regular expression .NET can compile: {ex.Message}"); }
        throw j.Error($"'{field}' pattern {Short(p)} must be {{\"String\": ...}} or {{\"Regex\": ...}}");
    }

    private static void ParseNormalizer(HfJson j, JsonElement? el, List<TextNormalizer> into)
    {
        if (el is not { } e) return;
        string type = TypeOf(j, e, "normalizer");
        switch (type)
        {
            case "Sequence":
                if (!e.TryGetProperty("normalizers", out var list) || list.ValueKind != JsonValueKind.Array) throw j.Error("normalizer Sequence needs a 'normalizers' array");
                foreach (var x in list.EnumerateArray()) ParseNormalizer(j, x, into);
                break;
            case "Prepend": into.Add(new TextNormalizer.Prepend(Str(j, e, "prepend", "normalizer"))); break;
            case "Replace":
                if (!e.TryGetProperty("pattern", out var p) || !p.TryGetProperty("String", out var ps) || ps.ValueKind != JsonValueKind.String)
                    throw j.Error($"normalizer Replace {Short(e)}: only {{\"String\": ...}} patterns are supported");
                into.Add(new TextNormalizer.Replace(ps.GetString()!, Str(j, e, "content", "normalizer"))); break;
            case "NFC": into.Add(new TextNormalizer.Unicode(NormalizationForm.FormC)); break;
            case "NFD": into.Add(new TextNormalizer.Unicode(NormalizationForm.FormD)); break;
            case "NFKC": into.Add(new TextNormalizer.Unicode(NormalizationForm.FormKC)); break;
            case "NFKD": into.Add(new TextNormalizer.Unicode(NormalizationForm.FormKD)); break;
            case "Lowercase": into.Add(new TextNormalizer.Lowercase()); break;
            default: throw j.Error($"normalizer type '{type}' is not supported (Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase are)");
        }
    }

    private static void ParsePreTokenizer(HfJson j, JsonElement? el, List<PreTokenizer> into)
    {
        if (el is not { } e) return;
        string type = TypeOf(j, e, "pre_tokenizer");
        switch (type)
        {
            case "Sequence":
                if (!e.TryGetProperty("pretokenizers", out var list) || list.ValueKind != JsonValueKind.Array) throw j.Error("pre_tokenizer Sequence needs a 'pretokenizers' array");
                foreach (var x in list.EnumerateArray()) ParsePreTokenizer(j, x, into);
                break;
            case "Split":
                string behavior = e.TryGetProperty("behavior", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "Isolated";
                if (behavior != "Isolated" || Flag(e, "invert", false))
                    throw j.Error($"pre_tokenizer Split with behavior '{behavior}'{(Flag(e, "invert", false) ? " and invert" : "")} is not supported (only Isolated, not inverted)");
                into.Add(new PreTokenizer.RegexSplit(Pattern(j, e, "pre_tokenizer")));
                break;
            case "ByteLevel": into.Add(new PreTokenizer.ByteLevel(Flag(e, "add_prefix_space", false), Flag(e, "use_regex", true))); break;
            case "Metaspace":
                string rep = Str(j, e, "replacement", "pre_tokenizer");
                if (rep.Length != 1) throw j.Error($"pre_tokenizer Metaspace replacement '{rep}' must be one character");
                string scheme = e.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String ? ps.GetString()!
                    : Flag(e, "add_prefix_space", true) ? "always" : "never";
                var prepend = scheme switch
                {
                    "always" => MetaspacePrepend.Always,
                    "first" => MetaspacePrepend.First,
                    "never" => MetaspacePrepend.Never,
                    _ => throw j.Error($"pre_tokenizer Metaspace prepend_scheme '{scheme}' is not always, first or never"),
                };
                into.Add(new PreTokenizer.Metaspace(rep[0], prepend, Flag(e, "split", true)));
                break;
            default: throw j.Error($"pre_tokenizer type '{type}' is not supported (Sequence, Split, ByteLevel, Metaspace are)");
        }
    }

    private static bool DecoderHas(JsonElement? el, string type)
    {
        if (el is not { ValueKind: JsonValueKind.Object } e || !e.TryGetProperty("type", out var t)) return false;
        if (t.ValueKind == JsonValueKind.String && t.GetString() == type) return true;
        return e.TryGetProperty("decoders", out var list) && list.ValueKind == JsonValueKind.Array && list.EnumerateArray().Any(x => DecoderHas(x, type));
    }

    /// <summary>The special token a TemplateProcessing post-processor puts before a single sequence, if any.</summary>
    private static string? ProcessorBos(JsonElement? el)
    {
        if (el is not { ValueKind: JsonValueKind.Object } e || !e.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String) return null;
        if (t.GetString() == "Sequence" && e.TryGetProperty("processors", out var list) && list.ValueKind == JsonValueKind.Array)
            return list.EnumerateArray().Select(x => ProcessorBos(x)).FirstOrDefault(x => x is not null);
        if (t.GetString() != "TemplateProcessing" || !e.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() == 0) return null;
        return single[0].TryGetProperty("SpecialToken", out var st) && st.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString() : null;
    }

    /// <summary>tokenizer_config.json's bos_token / eos_token (a string, or an object with "content") as an id; null when absent.</summary>
    private static int? TokenOf(HfJson? cfg, string key, string[] tokens)
    {
        if (cfg?.Get(key) is not { } v) return null;
        string? s = v.ValueKind == JsonValueKind.String ? v.GetString()
            : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
        if (s is null) throw cfg.Error($"'{key}' must be a string or an object with a string 'content'");
        int id = Array.IndexOf(tokens, s);
        return id >= 0 ? id : throw cfg.Error($"'{key}' is '{s}', which is not in tokenizer.json's vocabulary");
    }
}
