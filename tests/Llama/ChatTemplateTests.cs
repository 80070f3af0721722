using System.Text.Json;
using ManagedTensor.Models.Generation;
using ManagedTensor.Tests.Formats;
using Xunit;

namespace ManagedTensor.Tests.Llama;

/// <summary>
/// The hand-written chat formats against the real Jinja templates rendered by jinja2 (tests/fixtures/chat_templates/
/// make_expected.py, HF's apply_chat_template settings): each template must be recognized, and each rendering reproduced
/// character for character.
/// </summary>
public class ChatTemplateTests
{
    private static readonly JsonElement Fixture = JsonDocument.Parse(File.ReadAllText(RepoPaths.Of("tests", "fixtures", "chat_templates", "expected.json"))).RootElement;

    private static List<ChatMessage> Conversation(string name) =>
        Fixture.GetProperty("conversations").GetProperty(name).EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();

    [Fact]
    public void EveryReferenceTemplateIsRecognizedAndRenderedExactly()
    {
        var formats = new HashSet<string>();
        foreach (var t in Fixture.GetProperty("templates").EnumerateObject())
            Assert.True(ChatTemplates.Detect(t.Value.GetString()) == ChatTemplates.Parse(t.Name), $"template '{t.Name}' detected as {ChatTemplates.Detect(t.Value.GetString())}");
        int n = 0;
        foreach (var c in Fixture.GetProperty("cases").EnumerateArray())
        {
            string format = c.GetProperty("format").GetString()!;
            formats.Add(format);
            string got = ChatTemplates.Format(ChatTemplates.Parse(format), Conversation(c.GetProperty("conversation").GetString()!),
                c.GetProperty("add_generation_prompt").GetBoolean(), c.GetProperty("bos").GetString()!, c.GetProperty("eos").GetString()!);
            Assert.True(c.GetProperty("expected").GetString() == got,
                $"{format} / {c.GetProperty("conversation")} / gen {c.GetProperty("add_generation_prompt")}:\n  got      {JsonSerializer.Serialize(got)}\n  expected {JsonSerializer.Serialize(c.GetProperty("expected").GetString())}");
            n++;
        }
        Assert.True(n >= 60 && formats.Count == 12, $"{n} cases over {formats.Count} formats");
    }

    [Fact]
    public void SystemMessagesGoBeforeTheFirstUserTurnWhereTheTemplateHasNoSystemRole()
    {
        var conv = Conversation("with-system");
        // Gemma and Mistral v0.2 raise on a system message; llama.cpp (and we) put it in front of the first user message.
        Assert.Equal("<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n" +
                     "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
            ChatTemplates.Format(ChatFormat.Gemma, conv, true, "<bos>", "<eos>"));
        Assert.Equal("<s>[INST] You are a helpful assistant\n\nHello [/INST]  I am an assistant  </s>[INST]  Another question\n [/INST]",
            ChatTemplates.Format(ChatFormat.Mistral, conv, true, "<s>", "</s>"));
    }

    [Fact]
    public void UnknownTemplatesAreNotGuessedAndNamesAreAccepted()
    {
        Assert.Null(ChatTemplates.Detect("{% for m in messages %}{{ m.content }}{% endfor %}"));
        Assert.Null(ChatTemplates.Detect(null));
        Assert.Null(ChatTemplates.Detect("{{'<|im_start|>' + role + '<|im_sep|>'}}")); // phi-4: ChatML-like but not ChatML
        Assert.Equal(ChatFormat.ChatMl, ChatTemplates.Detect("chatml"));
        Assert.Equal("User: Hi\nAssistant:", ChatTemplates.Format(ChatFormat.Plain, [ChatMessage.User("Hi")], true, "", ""));
        Assert.Throws<ArgumentException>(() => ChatTemplates.Parse("jinja"));
    }

    [Fact]
    public void GgufChatTemplateEndOfTurnIdAndControlTokensAreRead()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        string template = Fixture.GetProperty("templates").GetProperty("zephyr").GetString()!;
        string path = Path.Combine(Path.GetTempPath(), $"mt-chat-{Guid.NewGuid():N}.gguf");
        try
        {
            ManagedTensor.Models.Formats.GgufLlama.Save(model, tok, path, ManagedTensor.Models.Formats.GgmlType.F32,
                [new("tokenizer.chat_template", template), new("tokenizer.ggml.eot_token_id", 7u)]);
            var m = ModelLoader.Open(path);
            Assert.Equal(template, m.ChatTemplate);
            Assert.Equal(new[] { 2, 7 }, m.StopTokens.Order());
            // BOS and EOS are control tokens: their text in a rendered prompt becomes the single id.
            string bos = m.Tokenizer.TokenText(1);
            Assert.Equal([1, 1], m.Tokenizer.Encode(bos, bos: true, parseSpecial: true));
            var chat = new TemplatedChat(m.Model, m.Tokenizer, ChatTemplates.Detect(m.ChatTemplate)!.Value, new SamplerOptions(Temperature: 0), m.StopTokens);
            var reply = chat.Say("Hi", 5);
            Assert.Equal(ChatTemplates.Format(ChatFormat.Zephyr, [ChatMessage.User("Hi")], true, bos, m.Tokenizer.TokenText(2)) + reply.Text, chat.FedText);
        }
        finally { File.Delete(path); }
    }

    private static ManagedTensor.Models.Generation.LoadedModel F16() => ModelLoader.Open(HfLlamaTests.Dir("f16_tied"));

    [Theory]
    [InlineData(ChatFormat.Zephyr, null)]
    [InlineData(ChatFormat.MistralV3, "Be brief.")] // the system prompt moves to the last user turn: the cache must roll back
    [InlineData(ChatFormat.Llama2, "Be brief.")]    // replies are stripped and EOS follows: a rewrite after every reply
    public void TurnsFeedOnlyWhatIsNewAndMatchAFreshRun(ChatFormat format, string? system)
    {
        var m = F16();
        var chat = new TemplatedChat(m.Model, m.Tokenizer, format, new SamplerOptions(Temperature: 0), stopTokens: [], system);
        var first = chat.Say("Once upon a time", 6);
        var second = chat.Say("Then what?", 6);
        // The cache holds exactly the text of the last rendering and the reply...
        string rendered = ChatTemplates.Format(format, chat.Messages.Take(chat.Messages.Count - 1).ToList(), true, "<s>", "</s>");
        Assert.Equal(rendered + second.Text, chat.FedText);
        // ...and continuing from those tokens in a fresh cache gives the same reply (nothing stale was kept).
        var history = chat.Session.History.Take(chat.Session.History.Count - second.Generated.Count).ToList();
        var fresh = TextGenerator.Generate(m.Model, m.Tokenizer, history, 6, new SamplerOptions(Temperature: 0), stopTokens: []);
        Assert.Equal(fresh.Generated, second.Generated);
        if (format == ChatFormat.Zephyr)
        {
            // Zephyr only appends: the second turn fed exactly the text after the first rendering and its reply.
            string before = ChatTemplates.Format(format, [ChatMessage.User("Once upon a time")], true, "<s>", "</s>") + first.Text;
            Assert.StartsWith(before, rendered);
            Assert.Equal(m.Tokenizer.Encode(rendered[before.Length..], bos: false, parseSpecial: true), second.PromptTokens);
        }
    }
}
