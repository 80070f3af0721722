using ManagedTensor.Models;
using ManagedTensor.Nn;

namespace ManagedTensor.Tests.Llama;

/// <summary>
/// A Llama forward written as plain float64 loops over a state dict (Hugging Face names), with no tensor ops, no cache
/// and no shared code with the model: the reference the model is checked against on every device and weight format.
/// Logits(tokens)[p] are the logits after tokens[0..p] (causal attention over the whole prefix).
/// </summary>
public static class LlamaReference
{
    public static double[][] Logits(LlamaConfig c, IReadOnlyDictionary<string, Tensor> weights, int[] tokens)
    {
        double[] W(string name) => weights[name].To(Device.Cpu).To(DType.F64).ToDoubleArray();
        int d = c.Dim, hs = c.HeadSize, kv = c.KvDim, hidden = c.HiddenDim, T = tokens.Length, group = c.NHeads / c.NKvHeads;
        var emb = W("model.embed_tokens.weight");
        var head = weights.ContainsKey("lm_head.weight") ? W("lm_head.weight") : emb;
        var x = new double[T][];
        for (int t = 0; t < T; t++) x[t] = emb.AsSpan(tokens[t] * d, d).ToArray();
        var freqs = RotaryEmbedding.FrequenciesOf(hs, c.RopeTheta, c.RopeScaling);

        double[] Rms(double[] v, double[] w)
        {
            double ss = v.Sum(a => a * a) / v.Length;
            double inv = 1 / Math.Sqrt(ss + c.NormEps);
            return v.Select((a, i) => a * inv * w[i]).ToArray();
        }
        double[] MatVec(double[] m, double[] v, int rows)
        {
            int cols = v.Length;
            var y = new double[rows];
            for (int r = 0; r < rows; r++) { double s = 0; for (int k = 0; k < cols; k++) s += m[r * cols + k] * v[k]; y[r] = s; }
            return y;
        }
        void Rope(double[] v, int heads, int pos)
        {
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < hs / 2; i++)
                {
                    int a = c.Rope == RopeLayout.Interleaved ? h * hs + 2 * i : h * hs + i;
                    int b = c.Rope == RopeLayout.Interleaved ? a + 1 : a + hs / 2;
                    double angle = pos * freqs[i], va = v[a], vb = v[b];
                    v[a] = va * Math.Cos(angle) - vb * Math.Sin(angle);
                    v[b] = va * Math.Sin(angle) + vb * Math.Cos(angle);
                }
        }

        for (int l = 0; l < c.NLayers; l++)
        {
            string p = $"model.layers.{l}.";
            double[] wq = W(p + "self_attn.q_proj.weight"), wk = W(p + "self_attn.k_proj.weight"), wv = W(p + "self_attn.v_proj.weight"), wo = W(p + "self_attn.o_proj.weight");
            double[] w1 = W(p + "mlp.gate_proj.weight"), w2 = W(p + "mlp.down_proj.weight"), w3 = W(p + "mlp.up_proj.weight");
            double[] n1 = W(p + "input_layernorm.weight"), n2 = W(p + "post_attention_layernorm.weight");
            var q = new double[T][]; var k = new double[T][]; var v = new double[T][];
            for (int t = 0; t < T; t++)
            {
                var h = Rms(x[t], n1);
                q[t] = MatVec(wq, h, d); k[t] = MatVec(wk, h, kv); v[t] = MatVec(wv, h, kv);
                Rope(q[t], c.NHeads, t); Rope(k[t], c.NKvHeads, t);
            }
            for (int t = 0; t < T; t++)
            {
                var o = new double[d];
                for (int hq = 0; hq < c.NHeads; hq++)
                {
                    int hk = hq / group;
                    var s = new double[t + 1];
                    for (int j = 0; j <= t; j++) { double dot = 0; for (int i = 0; i < hs; i++) dot += q[t][hq * hs + i] * k[j][hk * hs + i]; s[j] = dot / Math.Sqrt(hs); }
                    double max = s.Max(), sum = s.Sum(e => Math.Exp(e - max));
                    for (int j = 0; j <= t; j++)
                        for (int i = 0; i < hs; i++) o[hq * hs + i] += Math.Exp(s[j] - max) / sum * v[j][hk * hs + i];
                }
                var attn = MatVec(wo, o, d);
                for (int i = 0; i < d; i++) x[t][i] += attn[i];
                var h2 = Rms(x[t], n2);
                var gate = MatVec(w1, h2, hidden); var up = MatVec(w3, h2, hidden);
                var act = gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();
                var down = MatVec(w2, act, d);
                for (int i = 0; i < d; i++) x[t][i] += down[i];
            }
        }
        var norm = W("model.norm.weight");
        return x.Select(row => MatVec(head, Rms(row, norm), c.VocabSize)).ToArray();
    }
}
