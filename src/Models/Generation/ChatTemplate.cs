using System.Text;

namespace ManagedTensor.Models.Generation;

/// <summary>One turn of a conversation: role is "system", "user" or "assistant".</summary>
public readonly record struct ChatMessage(string Role, string Content)
{
    public static ChatMessage System(string content) => new("system", content);
    public static ChatMessage User(string content) => new("user", content);
    public static ChatMessage Assistant(string content) => new("assistant", content);
}

/// <summary>The chat formats written by hand here (a checkpoint's Jinja template is recognized, not interpreted).</summary>
public enum ChatFormat
{
    /// <summary>No template: the messages' text back to back (base models, stories260K).</summary>
    Raw,
    /// <summary>A generic "User: ... / Assistant:" layout for templates that are not recognized.</summary>
    Plain,
    ChatMl, Llama2, Llama3, Llama31, Zephyr, Gemma, Phi3, Mistral, MistralV1, MistralV3, MistralV3Tekken, MistralV7,
}

/// <summary>
/// Chat templates the way llama.cpp's llm_chat_detect_template does it: a checkpoint's Jinja chat_template (GGUF
/// tokenizer.chat_template, HF tokenizer_config.json chat_template) is recognized by marker substrings, and the prompt is
/// then written by hand-written code that produces exactly what that Jinja template renders (HF renders with
/// trim_blocks and lstrip_blocks; the reference strings in the tests come from jinja2 itself). Each formatter names the
/// template it follows. Differences from the Jinja, all where the template would raise an error instead: a system message
/// for a template without one (Gemma, Mistral v0.2) is put before the first user message, separated by a blank line, as
/// llama.cpp does; roles that do not alternate are written as they come.
/// </summary>
public static class ChatTemplates
{
    public static readonly IReadOnlyDictionary<string, ChatFormat> Names = new Dictionary<string, ChatFormat>(StringComparer.OrdinalIgnoreCase)
    {
        ["raw"] = ChatFormat.Raw,
        ["plain"] = ChatFormat.Plain,
        ["chatml"] = ChatFormat.ChatMl,
        ["llama2"] = ChatFormat.Llama2,
        ["llama3"] = ChatFormat.Llama3,
        ["llama3.1"] = ChatFormat.Llama31,
        ["zephyr"] = ChatFormat.Zephyr,
        ["gemma"] = ChatFormat.Gemma,
        ["phi3"] = ChatFormat.Phi3,
        ["mistral"] = ChatFormat.Mistral,
        ["mistral-v1"] = ChatFormat.MistralV1,
        ["mistral-v3"] = ChatFormat.MistralV3,
        ["mistral-v3-tekken"] = ChatFormat.MistralV3Tekken,
        ["mistral-v7"] = ChatFormat.MistralV7,
    };

    public static string NameOf(ChatFormat f) => Names.First(kv => kv.Value == f).Key;

    public static ChatFormat Parse(string name) =>
        Names.TryGetValue(name, out var f) ? f : throw new ArgumentException($"unknown chat template '{name}' (known: {string.Join(", ", Names.Keys)})");

    /// <summary>The format of a Jinja chat template by its marker substrings (llama.cpp's order of checks), or null when none matches.</summary>
    public static ChatFormat? Detect(string? jinja)
    {
        if (string.IsNullOrEmpty(jinja)) return null;
        if (Names.TryGetValue(jinja.Trim(), out var named)) return named; // a template given by name
        bool Has(string s) => jinja.Contains(s, StringComparison.Ordinal);
        if (Has("<|im_start|>")) return Has("<|im_sep|>") ? null : ChatFormat.ChatMl; // phi-4 uses <|im_sep|>: not written here
        if (jinja.StartsWith("mistral", StringComparison.Ordinal) || Has("[INST]"))
        {
            if (Has("[SYSTEM_PROMPT]")) return ChatFormat.MistralV7;
            if (Has("' [INST] ' + system_message") || Has("[AVAILABLE_TOOLS]"))
                return Has(" [INST]") ? ChatFormat.MistralV1 : Has("\"[INST]\"") ? ChatFormat.MistralV3Tekken : ChatFormat.MistralV3;
            return Has("<<SYS>>") ? ChatFormat.Llama2 : ChatFormat.Mistral;
        }
        if (Has("<|assistant|>") && Has("<|end|>")) return ChatFormat.Phi3;
        if (Has("<|user|>") && Has("<|assistant|>")) return ChatFormat.Zephyr;
        if (Has("<start_of_turn>")) return ChatFormat.Gemma;
        if (Has("<|start_header_id|>") && Has("<|end_header_id|>")) return Has("Cutting Knowledge Date") ? ChatFormat.Llama31 : ChatFormat.Llama3;
        return null;
    }

    /// <summary>The token string that ends an assistant turn in <paramref name="f"/> besides EOS (a stop token), or null.</summary>
    public static string? EndOfTurn(ChatFormat f) => f switch
    {
        ChatFormat.ChatMl => "<|im_end|>",
        ChatFormat.Llama3 or ChatFormat.Llama31 => "<|eot_id|>",
        ChatFormat.Gemma => "<end_of_turn>",
        ChatFormat.Phi3 => "<|end|>",
        _ => null,
    };

    /// <summary>
    /// The prompt for <paramref name="messages"/> in format <paramref name="f"/>, ending with the assistant's header when
    /// <paramref name="addGenerationPrompt"/> (for templates that have one). <paramref name="bos"/> and <paramref name="eos"/> are
    /// the tokenizer's token strings, written where the template writes bos_token and eos_token.
    /// </summary>
    public static string Format(ChatFormat f, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string bos, string eos)
    {
        var sb = new StringBuilder();
        switch (f)
        {
            case ChatFormat.Raw:
                foreach (var m in messages) sb.Append(m.Content);
                break;
            case ChatFormat.Plain:
                foreach (var m in messages)
                    sb.Append(m.Role switch { "system" => m.Content + "\n\n", "user" => "User: " + m.Content + "\n", _ => "Assistant: " + m.Content + "\n" });
                if (addGenerationPrompt) sb.Append("Assistant:");
                break;
            case ChatFormat.ChatMl:
                // teknium/OpenHermes-2.5-Mistral-7B (and Qwen, SmolLM, ... without their default system prompts)
                foreach (var m in messages) sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
                if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
                break;
            case ChatFormat.Llama2:
                {
                    // meta-llama/Llama-2-7b-chat-hf: BOS before every [INST], the system prompt inside the first one, contents stripped.
                    var (system, rest) = SplitSystem(messages);
                    for (int i = 0; i < rest.Count; i++)
                    {
                        string c = i == 0 && system is not null ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + rest[i].Content : rest[i].Content;
                        if (rest[i].Role == "user") sb.Append(bos).Append("[INST] ").Append(Strip(c)).Append(" [/INST]");
                        else if (rest[i].Role == "assistant") sb.Append(' ').Append(Strip(c)).Append(' ').Append(eos);
                    }
                    break;
                }
            case ChatFormat.Llama3:
                // meta-llama/Meta-Llama-3-8B-Instruct
                for (int i = 0; i < messages.Count; i++)
                {
                    if (i == 0) sb.Append(bos);
                    Llama3Header(sb, messages[i].Role).Append(Strip(messages[i].Content)).Append("<|eot_id|>");
                }
                if (addGenerationPrompt) Llama3Header(sb, "assistant");
                break;
            case ChatFormat.Llama31:
                {
                    // meta-llama/Llama-3.1-8B-Instruct, 3.2, 3.3 without tools: always a system turn with the knowledge cutoff and a
                    // date (the template's own fallback date, used when strftime_now / date_string are not given).
                    var (system, rest) = SplitSystem(messages);
                    sb.Append(bos);
                    Llama3Header(sb, "system").Append("Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n")
                        .Append(Strip(system ?? "")).Append("<|eot_id|>");
                    foreach (var m in rest) Llama3Header(sb, m.Role).Append(Strip(m.Content)).Append("<|eot_id|>");
                    if (addGenerationPrompt) Llama3Header(sb, "assistant");
                    break;
                }
            case ChatFormat.Zephyr:
                // HuggingFaceH4/zephyr-7b-beta, TinyLlama/TinyLlama-1.1B-Chat-v1.0
                for (int i = 0; i < messages.Count; i++)
                {
                    var m = messages[i];
                    if (m.Role is "user" or "system" or "assistant") sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append(eos).Append('\n');
                    if (i == messages.Count - 1 && addGenerationPrompt) sb.Append("<|assistant|>\n");
                }
                break;
            case ChatFormat.Gemma:
                // google/gemma-2-2b-it: "model" for the assistant, contents trimmed, no system role.
                sb.Append(bos);
                foreach (var m in MergeSystem(messages, "\n\n"))
                    sb.Append("<start_of_turn>").Append(m.Role == "assistant" ? "model" : m.Role).Append('\n').Append(Strip(m.Content)).Append("<end_of_turn>\n");
                if (addGenerationPrompt) sb.Append("<start_of_turn>model\n");
                break;
            case ChatFormat.Phi3:
                // microsoft/Phi-3.5-mini-instruct: an empty system message is left out; without a generation prompt the text ends in EOS.
                foreach (var m in messages)
                    if (m.Role is "user" or "assistant" || (m.Role == "system" && m.Content.Length > 0))
                        sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("<|end|>\n");
                sb.Append(addGenerationPrompt ? "<|assistant|>\n" : eos);
                break;
            case ChatFormat.Mistral:
                // mistralai/Mistral-7B-Instruct-v0.2 (the pre-v1 template, no system role)
                sb.Append(bos);
                foreach (var m in MergeSystem(messages, "\n\n"))
                    if (m.Role == "user") sb.Append("[INST] ").Append(m.Content).Append(" [/INST]");
                    else sb.Append(m.Content).Append(eos);
                break;
            case ChatFormat.MistralV1:
                {
                    // Mistral's official "v1" template (Mistral-7B-Instruct-v0.1/v0.2 with a system prompt): " [INST] ", system in the first turn.
                    var (system, rest) = SplitSystem(messages);
                    sb.Append(bos);
                    for (int i = 0; i < rest.Count; i++)
                        if (rest[i].Role == "user")
                            sb.Append(" [INST] ").Append(i == 0 && system is not null ? system + "\n\n" + rest[i].Content : rest[i].Content).Append(" [/INST]");
                        else sb.Append(' ').Append(rest[i].Content).Append(eos);
                    break;
                }
            case ChatFormat.MistralV3:
            case ChatFormat.MistralV3Tekken:
                {
                    // Mistral-Large-Instruct-2407 ("v3": "[INST] ", assistant trimmed) and Mistral-Nemo-Instruct-2407 ("v3-tekken":
                    // no spaces): the system prompt goes into the LAST user message, as those templates put it.
                    bool tekken = f == ChatFormat.MistralV3Tekken;
                    var (system, rest) = SplitSystem(messages);
                    sb.Append(bos);
                    for (int i = 0; i < rest.Count; i++)
                        if (rest[i].Role == "user")
                            sb.Append(tekken ? "[INST]" : "[INST] ").Append(i == rest.Count - 1 && system is not null ? system + "\n\n" + rest[i].Content : rest[i].Content).Append("[/INST]");
                        else if (tekken) sb.Append(rest[i].Content).Append(eos);
                        else sb.Append(' ').Append(Strip(rest[i].Content)).Append(eos);
                    break;
                }
            case ChatFormat.MistralV7:
                // mistralai/Mistral-Large-Instruct-2411 ("v7"): a [SYSTEM_PROMPT] block where the system message is.
                sb.Append(bos);
                foreach (var m in messages)
                    if (m.Role == "system") sb.Append("[SYSTEM_PROMPT] ").Append(m.Content).Append("[/SYSTEM_PROMPT]");
                    else if (m.Role == "user") sb.Append("[INST] ").Append(m.Content).Append("[/INST]");
                    else sb.Append(' ').Append(m.Content).Append(eos);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(f), f, "unknown chat format");
        }
        return sb.ToString();
    }

    private static StringBuilder Llama3Header(StringBuilder sb, string role) =>
        sb.Append("<|start_header_id|>").Append(role).Append("<|end_header_id|>\n\n");

    /// <summary>Python's str.strip() / Jinja's trim: leading and trailing whitespace.</summary>
    private static string Strip(string s) => s.Trim();

    private static (string? System, List<ChatMessage> Others) SplitSystem(IReadOnlyList<ChatMessage> messages) =>
        messages.Count > 0 && messages[0].Role == "system" ? (messages[0].Content, messages.Skip(1).ToList()) : (null, messages.ToList());

    /// <summary>For templates without a system role: the system text goes before the first user message's content.</summary>
    private static List<ChatMessage> MergeSystem(IReadOnlyList<ChatMessage> messages, string separator)
    {
        var (system, rest) = SplitSystem(messages);
        if (system is null) return rest;
        int first = rest.FindIndex(m => m.Role == "user");
        if (first < 0) rest.Insert(0, ChatMessage.User(system));
        else rest[first] = rest[first] with { Content = system + separator + rest[first].Content };
        return rest;
    }
}
