using ManagedTensor.Models;
using ManagedTensor.Models.Generation;
using ManagedTensor.Nn;
using Xunit;

namespace ManagedTensor.Tests.Llama;

public class SamplerTests
{
    private static float[] Logits() => [0.1f, 2.0f, 1.5f, -1f, 1.9f];

    [Fact]
    public void GreedyAndTopKOnePickTheArgmax()
    {
        Assert.Equal(1, new Sampler(new SamplerOptions()).Sample(Logits(), []));
        var s = new Sampler(new SamplerOptions(Temperature: 1.5f, TopK: 1));
        for (int i = 0; i < 20; i++) Assert.Equal(1, s.Sample(Logits(), []));
    }

    [Fact]
    public void SameSeedSameSamplesAndTopPRestrictsTheSet()
    {
        int[] Draw(ulong seed, float topP) { var s = new Sampler(new SamplerOptions(1f, 0, topP, 1f, seed)); return Enumerable.Range(0, 200).Select(_ => s.Sample(Logits(), [])).ToArray(); }
        Assert.Equal(Draw(7, 1f), Draw(7, 1f));
        Assert.NotEqual(Draw(7, 1f), Draw(8, 1f));
        Assert.Equal(5, Draw(7, 1f).Distinct().Count());
        // probabilities ~ e^[0.1, 2, 1.5, -1, 1.9]: tokens 1 and 4 hold ~0.58 of the mass, so top-p 0.5 keeps 1 and 4 only
        Assert.True(Draw(7, 0.5f).All(t => t is 1 or 4));
    }

    [Fact]
    public void RepetitionPenaltyDemotesSeenTokens()
    {
        var s = new Sampler(new SamplerOptions(RepetitionPenalty: 2f));
        Assert.Equal(4, s.Sample(Logits(), [1, 1]));   // 2.0 / 2 = 1.0 < 1.9
        Assert.Equal(2, s.Sample(Logits(), [1, 4]));
    }

    [Fact]
    public void Llama3RopeScalingKeepsHighFrequenciesAndSlowsLowOnes()
    {
        var plain = RotaryEmbedding.FrequenciesOf(128, 500000, null);
        var scaled = new RotaryEmbedding(128, 500000, scaling: new Llama3RopeScaling(8f, 1f, 4f, 8192)).Frequencies;
        for (int i = 0; i < plain.Length; i++)
        {
            double wavelen = 2 * Math.PI / plain[i];
            if (wavelen < 8192 / 4.0) Assert.Equal(plain[i], scaled[i]);
            else if (wavelen > 8192 / 1.0) Assert.Equal(plain[i] / 8, scaled[i], 12);
            else Assert.InRange(scaled[i], plain[i] / 8, plain[i]);
        }
        Assert.Equal(1.0, scaled[0]);
        Assert.Equal(plain[^1] / 8, scaled[^1], 12);
    }
}

public class ChatSessionTests
{
    [Fact]
    public void TurnsContinueOneCacheAndMatchAOneShotRun()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        var chat = new ChatSession(model, tok, new SamplerOptions(), stopTokens: []);
        var first = chat.Say("Once upon a time", 10);
        var second = chat.Say("Then", 10);
        Assert.Equal(10, first.Generated.Count);
        // The same tokens decoded in one go give the same greedy continuation.
        var all = chat.History.Take(chat.History.Count - 10).ToList();
        var oneShot = TextGenerator.Generate(model, tok, all, 10, new SamplerOptions(), stopTokens: []);
        Assert.Equal(oneShot.Generated, second.Generated);
        Assert.Equal(tok.Encode("Once upon a time").Count + 10 + tok.Encode("Then", bos: false).Count + 10, chat.History.Count);
        chat.Dispose();
    }

    [Fact]
    public void SeededSamplingIsReproducibleAndStopsAtStopTokens()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        var opts = new SamplerOptions(Temperature: 1f, TopP: 0.9f, Seed: 1234);
        var a = TextGenerator.Generate(model, tok, [1], 60, opts);
        var b = TextGenerator.Generate(model, tok, [1], 60, opts);
        Assert.Equal(a.Generated, b.Generated);
        var stopAt = a.Generated[5];
        var c = TextGenerator.Generate(model, tok, [1], 60, opts, stopTokens: [stopAt]);
        Assert.Equal(a.Generated.TakeWhile(t => t != stopAt), c.Generated);
    }
}

public class ContextLengthTests
{
    /// <summary>
    /// A full context slides instead of ending the reply (it used to stop at 19 tokens, silently): BOS stays, the oldest half
    /// of the rest is dropped with a notice, and generation goes on; until the first slide the tokens are the reference's.
    /// </summary>
    [Fact]
    public void AShortContextSlidesWithANoticeAndTheReplyGoesOn()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        var notices = new List<string>();
        var r = TextGenerator.Generate(model, tok, [1], 60, new SamplerOptions(), stopTokens: [], contextLength: 20, notice: notices.Add);
        Assert.Equal(60, r.Generated.Count);
        var want = File.ReadAllLines(RepoPaths.Of("tests", "fixtures", "stories260K", "greedy200.txt")).Select(int.Parse).Take(19);
        Assert.Equal(want, r.Generated.Take(19)); // 20 positions: BOS plus 19 tokens before the first slide
        Assert.True(notices.Count >= 3, string.Join("\n", notices));
        Assert.All(notices, n => Assert.Contains("context full (20 tokens)", n));
        using var cache = model.NewCache(1, 20);
        model.NextLogits(new int[20], cache);
        Assert.Throws<ArgumentException>(() => model.NextLogits([1], cache));
    }

    [Fact]
    public void APromptLongerThanTheContextKeepsBosAndItsEnd()
    {
        var (model, tok) = ModelLoader.OpenLlama(RepoPaths.Stories260K, RepoPaths.Tok512);
        var prompt = tok.Encode(string.Concat(Enumerable.Repeat("Once upon a time, there was a little girl. ", 12)));
        Assert.True(prompt.Count > 64);
        var notices = new List<string>();
        var r = TextGenerator.Generate(model, tok, prompt, 40, new SamplerOptions(), stopTokens: [], contextLength: 64, notice: notices.Add);
        Assert.Equal([1, .. prompt.Skip(prompt.Count - 32)], r.PromptTokens);  // BOS and the last half-context
        Assert.Equal(40, r.Generated.Count);
        Assert.Contains(notices, n => n.Contains($"the prompt's {prompt.Count} tokens do not fit the context of 64"));
    }
}
