using ManagedTensor.Apps;
using ManagedTensor.Models.Generation;
using Xunit;

namespace ManagedTensor.Tests.Llama;

/// <summary>
/// A conversation longer than the context (issue 13): `mt chat` with the default model died on the fourth turn of four
/// ordinary messages ("8 tokens do not fit: 0 of 512 positions left") after cutting the third reply short without a
/// word. Now the oldest turns are dropped, and a reply that fills the context slides it, each with a notice.
/// </summary>
public class ChatContextTests
{
    private static readonly string[] Messages =
    [
        "Once upon a time there was a little girl who wanted to see the sea.",
        "She asked her mom if they could go to the beach on Sunday.",
        "At the beach she found a shell and a little crab.",
        "Then it started to rain and they ran home.",
        "The next day the sun came out again.",
        "She told her friend about the crab.",
    ];

    [Fact]
    public void Six_turns_of_two_hundred_tokens_fit_a_512_token_context_by_dropping_old_turns()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        using var chat = new TemplatedChat(model, tok, ChatFormat.Raw, new SamplerOptions(Temperature: 0.8f, TopP: 0.9f, Seed: 5), ModelLoader.StopTokens(tok, null, []));
        var notices = new List<string>();
        chat.Notice = notices.Add;
        foreach (var m in Messages)
        {
            chat.Say(m, 200); // a reply ends at EOS or after 200 tokens, never at the context's end
            Assert.True(chat.Session.History.Count <= chat.Session.ContextLength + 1);
        }
        Assert.Contains(notices, n => n.Contains("dropped the oldest") && n.Contains("turn"));
        Assert.Equal(512, chat.Session.ContextLength);
    }

    [Fact]
    public void Mt_chat_with_the_default_model_survives_six_turns()
    {
        var input = new StringReader(string.Join("\n", Messages) + "\n\n");
        var stdin = Console.In;
        var stderr = Console.Error;
        var errors = new StringWriter();
        try
        {
            Console.SetIn(input);
            Console.SetError(errors);
            var output = new StringWriter();
            int code = MtApp.Run(["chat", "--length", "200"], output);
            Assert.True(code == 0, output + errors.ToString());
            Assert.Equal(Messages.Length + 1, output.ToString().Split("> ").Length - 1); // a prompt per message, and the last
        }
        finally
        {
            Console.SetIn(stdin);
            Console.SetError(stderr);
        }
        Assert.Contains("context full", errors.ToString());
    }

    /// <summary>
    /// `mt generate` with a prompt longer than stories260K's 512 positions (it was an error, and before that an exception):
    /// the prompt is trimmed to BOS and its last half-context, with a notice on stderr, and the text is generated.
    /// </summary>
    [Fact]
    public void Mt_generate_with_a_prompt_longer_than_the_context_trims_it_with_a_notice()
    {
        string prompt = string.Concat(Enumerable.Repeat("Once upon a time, there was a little girl named Lily. ", 60)); // ~900 tokens
        var r = ManagedTensor.Tests.Apps.Mt.Run("generate", "-p", prompt, "-n", "8", "--temperature", "0");
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("do not fit the context of 512", r.Err);
        Assert.StartsWith(prompt, r.Out, StringComparison.Ordinal);
        Assert.True(r.Out.Length > prompt.Length + 4, r.ToString()); // the continuation follows the prompt
    }

    /// <summary>`--length` beyond the context says so up front, then the context slides (with a notice) instead of cutting the text short.</summary>
    [Fact]
    public void Mt_generate_with_a_length_beyond_the_context_says_so_and_slides()
    {
        var r = ManagedTensor.Tests.Apps.Mt.Run("generate", "-p", "Once upon a time", "-n", "700", "--temperature", "1", "--seed", "7");
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("--length 700 exceed the context of 512", r.Err);
        var stats = r.Err.Split('\n').Single(l => l.StartsWith("prefill ", StringComparison.Ordinal));
        int generated = int.Parse(stats.Split(' ')[7]);
        // stories260K ends a story with EOS now and then; a run that passes 512 positions must have slid.
        if (generated + 5 > 512) Assert.Contains("context full (512 tokens)", r.Err);
    }
}
