using System.Text.Json.Nodes;
using ManagedTensor.Models.Formats;
using ManagedTensor.Models.IO;
using ManagedTensor.Models.Whisper;
using ManagedTensor.Nn;
using ManagedTensor.Tests.Autograd;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Whisper;

/// <summary>
/// The model against tests/fixtures/whisper/make_tiny_whisper.py: a tiny random WhisperForConditionalGeneration in
/// Hugging Face's layout (F16 weights, d_model 64, 2 + 2 layers, 4 heads, 80 mels) and the encoder output and decoder
/// logits of an independent float64 PyTorch forward on the same weights.
/// </summary>
public class WhisperModelTests
{
    public static string TinyDir => RepoPaths.Of("tests", "fixtures", "whisper", "tiny");

    private static readonly Lazy<WhisperModel> Tiny = new(() =>
    {
        using var ck = HfCheckpoint.Open(TinyDir);
        return HfWhisper.LoadModel(ck);
    });

    private static readonly Lazy<Dictionary<string, Tensor>> Reference = new(() => SafeTensors.Load(Path.Combine(TinyDir, "reference.safetensors")));

    public static WhisperModel TinyModel => Tiny.Value;

    [Fact]
    public void EncoderAndDecoderMatchPyTorch()
    {
        var m = Tiny.Value;
        Assert.Equal(new WhisperConfig(80, 64, 2, 4, 128, 2, 4, 128, 50, 24, 120), m.Config);
        var r = Reference.Value;
        using var noGrad = GradMode.NoGrad();
        var audio = m.Encode(r["mel"]);
        TestUtil.AssertClose(r["encoder_out"], audio, 1e-4, 1e-4, "encoder output");
        var logits = m.Decoder.Forward(r["tokens"], m.Decoder.CrossKeysValues(audio));
        TestUtil.AssertClose(r["logits"], logits, 1e-4, 1e-4, "decoder logits");

        // Control: k_proj with the bias it does not have (any shift of k) leaves attention unchanged, but q's bias matters.
        var q = m.Encoder.Layers[0].SelfAttn.Q.Bias!;
        var saved = q.Clone();
        q.CopyFrom_(q + 0.5);
        Assert.True(m.Encode(r["mel"]).Sub(r["encoder_out"]).Abs().Max().Item() > 1e-2);
        q.CopyFrom_(saved);
    }

    [Fact]
    public void CachedDecodingGivesTheTeacherForcedLogits()
    {
        var m = Tiny.Value;
        var r = Reference.Value;
        using var noGrad = GradMode.NoGrad();
        var audio = m.Encode(r["mel"]);
        var tokens = r["tokens"].ToArray<long>();
        using var state = m.StartDecoding(audio);
        var first = state.Step(Tensor.FromArray(tokens[..3], [1, 3]));                // a prompt of 3, then one at a time
        TestUtil.AssertClose(r["logits"].Narrow(1, 2, 1).Reshape(1, 120), first, 1e-4, 1e-4, "prompt");
        for (int p = 3; p < tokens.Length; p++)
        {
            var step = state.Step(Tensor.FromArray(new[] { tokens[p] }, [1, 1]));
            TestUtil.AssertClose(r["logits"].Narrow(1, p, 1).Reshape(1, 120), step, 1e-4, 1e-4, $"position {p}");
        }
        Assert.Equal(tokens.Length, state.Length);
    }

    [Fact]
    public void BeamRowsFollowTheRowsTheyCameFrom()
    {
        var m = Tiny.Value;
        var r = Reference.Value;
        using var noGrad = GradMode.NoGrad();
        var audio = m.Encode(r["mel"]);
        using var state = m.StartDecoding(audio, batch: 2);
        state.Step(Tensor.FromArray(new long[] { 3, 17, 3, 50 }, [2, 2]));             // row 0: 3 17, row 1: 3 50
        state.SelectRows([0, 0]);                                                       // both continue row 0
        var logits = state.Step(Tensor.FromArray(new long[] { 42, 42 }, [2, 1]));       // 3 17 42 in both rows
        TestUtil.AssertClose(r["logits"].Narrow(1, 2, 1).Reshape(1, 120).Expand(2, 120).Contiguous(), logits, 1e-4, 1e-4, "after SelectRows");
    }

    [Fact]
    public void Conv1dGradientsMatchFiniteDifferences()
    {
        var x = TestUtil.RandomTensor([2, 3, 7], 1);
        var w = TestUtil.RandomTensor([4, 3, 3], 2);
        var b = TestUtil.RandomTensor([4], 3);
        GradCheck.Check(t => new Conv1d(t[1], t[2], stride: 2, padding: 1).Forward(t[0]), [x, w, b]);
        // and the values of a stride-2 padded conv against the definition
        var y = new Conv1d(w, b, stride: 2, padding: 1).Forward(x);
        Assert.Equal([2, 4, 4], y.Shape);
        double want = b.ToDoubleArray()[1];
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 3; k++)
            {
                int pos = 2 * 2 + k - 1; // output 2, stride 2, padding 1
                if (pos >= 0 && pos < 7) want += w.ToDoubleArray()[(1 * 3 + c) * 3 + k] * x.ToDoubleArray()[(1 * 3 + c) * 7 + pos];
            }
        Assert.Equal(want, y.ToDoubleArray()[(1 * 4 + 1) * 4 + 2], 1e-12);
    }

    [Fact]
    public void OtherArchitecturesAndMismatchedCheckpointsAreRefused()
    {
        using (var llama = HfCheckpoint.Open(RepoPaths.Of("tests", "fixtures", "hf_llama", "f16_tied")))
        {
            var e = Assert.Throws<InvalidModelFileException>(() => HfWhisper.LoadModel(llama));
            Assert.Contains("not a Whisper checkpoint", e.Message);
            Assert.Contains("LlamaForCausalLM", e.Message);
        }
        string dir = Path.Combine(Path.GetTempPath(), $"mt-whisper-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            File.Copy(Path.Combine(TinyDir, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(TinyDir, "config.json")))!;
            cfg["encoder_layers"] = 1;
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
            using (var ck = HfCheckpoint.Open(dir))
            {
                var e = Assert.Throws<InvalidModelFileException>(() => HfWhisper.LoadModel(ck));
                Assert.Contains("model.encoder.layers.1.", e.Message);
            }
            cfg["encoder_layers"] = 2;
            cfg["d_model"] = 32;
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
            using (var ck = HfCheckpoint.Open(dir))
            {
                var e = Assert.Throws<InvalidModelFileException>(() => HfWhisper.LoadModel(ck));
                Assert.Contains("has shape [64, 80, 3], expected [32, 80, 3]", e.Message);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TooManyMelFramesAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => Tiny.Value.Encode(Tensor.Zeros([1, 80, 101])));
        Assert.Contains("1..100 frames", e.Message);
    }
}
