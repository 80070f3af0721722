namespace ManagedTensor.Models.Planning;

/// <summary>
/// The tensors one micro-batch of training allocates on a device with this engine, op by op, read from the models
/// (src/Models/Gpt/Gpt.cs, src/Models/Llama/Llama.cs), their nn modules and the backward rules (src/Autograd), and
/// checked against the allocator's trace of a step (tests/Planning). N = B T tokens, C the width, F the MLP width,
/// H heads, Ckv the key/value width, V the vocabulary. Activations take <c>h</c> bytes where autocast makes them 16-bit
/// (matmul and attention outputs and what is computed from them: bias adds, GELU, SiLU, RoPE; 4 bytes without autocast)
/// and 4 where they are float32 either way (the embeddings, the residual stream, the norms, the loss): the engine's
/// autocast (src/Engine/Autocast.cs) has PyTorch's layout. Under autocast each cast is a tensor of its own: a Linear
/// casts a float32 input to 16 bits (and its bias), a residual add casts the 16-bit branch up to float32, cross-entropy
/// the 16-bit logits; backward casts each of their gradients back.
/// Gradients of parameters are not here (the planner counts them once); backward lists hold the other tensors the
/// backward rules make: input gradients of every op, and sums where a tensor feeds two ops (the residual stream).
/// </summary>
public static class EngineActivations
{
    /// <summary><see cref="Count"/> allocations of the same size (each rounded to the allocator's size class on its own): what they are, elements, element bytes.</summary>
    public readonly record struct Alloc(string What, long Elements, int ElementBytes, int Count = 1)
    {
        public long Bytes => Elements * ElementBytes;
    }

    /// <summary>The allocations of one micro-batch, by where in the model they happen.</summary>
    public sealed record Step(
        IReadOnlyList<Alloc> EmbedForward, IReadOnlyList<Alloc> BlockForward, IReadOnlyList<Alloc> HeadForward,
        IReadOnlyList<Alloc> HeadBackward, IReadOnlyList<Alloc> BlockBackward, IReadOnlyList<Alloc> EmbedBackward,
        IReadOnlyList<Alloc> CheckpointKept, IReadOnlyList<Alloc> CheckpointRecompute);

    public static Step Of(ModelShape m, PlanRecipe r)
    {
        long n = (long)r.Batch * r.Seq, c = m.Dim, f = m.Hidden, v = m.Vocab, heads = m.Heads, kv = m.KvDim;
        bool amp = r.Autocast;
        int h = amp ? 2 : 4;
        Alloc A(string what, long elements, int bytes = 4, int count = 1) => new(what, elements, bytes, count);   // float32
        Alloc H(string what, long elements, int count = 1) => new(what, elements, h, count);                    // 16-bit under autocast
        // The residual stream is in the embedding's dtype: float32, or 16-bit for a LoRA or QLoRA base stored in 16 bits
        // (--dtype bf16), whose stream then stays 16-bit under autocast (16-bit + 16-bit adds need no cast) while each norm
        // casts its input up to float32 and its input gradient back down.
        bool stream16 = amp && r.Lora && r.FloatDType.SizeOf() == 2;
        int sb = stream16 ? 2 : 4;
        Alloc S(string what, long elements, int count = 1) => new(what, elements, sb, count);
        List<Alloc> Norm(string name) => stream16 ? [A($"{name} input cast to float32 (N, C)", n * c)] : [];
        List<Alloc> NormBack(string name) => stream16 ? [A($"d {name} input cast to 16 bits (N, C)", n * c, 2)] : [];
        bool lora = r.Lora;
        long rank = r.LoraRank;

        // Token ids and targets copied to the device (int64), the embedding (and GPT's positions), the sum.
        var embedForward = new List<Alloc> { A("ids", n, 8), A("targets", n, 8), S("token embedding (N, C)", n * c) };
        var embedBackward = new List<Alloc>();
        if (m.Family == ModelFamily.Gpt)
        {
            embedForward.AddRange([A("positions (T)", r.Seq, 8), S("position embedding (T, C)", r.Seq * c), S("tok + pos (N, C)", n * c)]);
            embedBackward.Add(A("d pos summed over B (T, C)", r.Seq * c));
        }
        // A tied head: the embedding's backward makes a (V, C) gradient and autograd a second one, their sum.
        if (m.TiedHead && !lora)
            embedBackward.AddRange([A("embedding backward (V, C)", v * c, 4), A("tied gradient sum (V, C)", v * c, 4)]);

        var block = new List<Alloc>();
        var blockBack = new List<Alloc>();
        // A Linear (in -> out): the product, its bias; backward: the input gradient. Under autocast the product and the bias
        // add are 16-bit; a float32 input (a norm's output) is cast to 16 bits first, each Linear its own copy, and its input
        // gradient cast back to float32; the bias is cast (and its 16-bit gradient made before autograd casts it back).
        // LoRA (src/Autograd/Nn/Linear.Lora.cs) adds x A^T (N, r), its B product (N, out), the scaled sum; backward their gradients.
        void Linear(string name, long inF, long outF, bool bias, bool floatInput)
        {
            block.Add(H($"{name} (N, {outF})", n * outF));
            if (bias) block.Add(H($"{name} + bias", n * outF));
            blockBack.Add(H($"d {name} input (N, {inF})", n * inF));
            // The gradient of the weight's 16-bit copy, before autograd casts it to the float32 master's (full training).
            if (amp && !lora) blockBack.Add(A($"d {name} weight in 16 bits ({outF}, {inF})", inF * outF, 2));
            if (amp && floatInput)
            {
                block.Add(A($"{name} input cast to 16 bits (N, {inF})", n * inF, 2));
                blockBack.Add(A($"d {name} input cast back to float32 (N, {inF})", n * inF));
            }
            if (amp && bias)
            {
                block.Add(A($"{name} bias cast to 16 bits", outF, 2));
                blockBack.Add(A($"d {name} bias in 16 bits", outF, 2));
            }
            if (!lora) return;
            // LoRA's dropout on the adapter's input (Functional.Dropout): uniform draws, the U8 keep test, the keep
            // mask as float, scaled by 1/(1-p), the product; backward the product with the mask. `mt finetune`'s
            // default 0.05 makes these 5 (N, in) tensors per adapted Linear, more than the adapter's own (N, r) and
            // (N, out) ones on a narrow model: the plan missed them (20% under the measured LoRA step) until counted.
            // Under autocast the adapter's input is x as it comes (float32 after a norm, 16-bit after attention or SiLU), its
            // matmuls cast a float32 x and both adapter weights to 16 bits, and its 16-bit delta adds to the 16-bit product.
            int xb = amp && !floatInput ? h : 4;
            if (r.LoraDropout)
            {
                block.AddRange([A($"{name} lora dropout draws, mask, scaled mask, dropped x (N, in)", n * inF, xb, count: 4), A($"{name} lora dropout keep test (N, in) U8", n * inF, 1)]);
                blockBack.Add(A($"d {name} lora dropout input (N, in)", n * inF, xb));
            }
            if (amp)
            {
                block.AddRange([A($"{name} lora A cast to 16 bits (r, in)", rank * inF, 2), A($"{name} lora B cast to 16 bits (out, r)", outF * rank, 2)]);
                blockBack.AddRange([A($"d {name} lora A in 16 bits", rank * inF, 2), A($"d {name} lora B in 16 bits", outF * rank, 2)]);
                if (floatInput)
                {
                    block.Add(A($"{name} lora input cast to 16 bits (N, in)", n * inF, 2));
                    blockBack.Add(A($"d {name} lora input cast back to float32 (N, in)", n * inF));
                }
            }
            block.AddRange([H($"{name} lora x A^T (N, r)", n * rank), H($"{name} lora B (N, out)", n * outF), H($"{name} lora scaled", n * outF), H($"{name} + lora", n * outF)]);
            blockBack.AddRange([H($"d {name} lora (N, out)", n * outF), H($"d {name} lora x A^T (N, r)", n * rank), A($"d {name} lora input", n * inF, amp ? h : 4), A($"d {name} input sum", n * inF, xb)]);
        }
        // The residual add x + f(x) under autocast: the 16-bit branch cast up to float32 (PyTorch's bf16 + f32 -> f32), and
        // backward the float32 gradient cast down for the branch.
        void Residual(string name)
        {
            if (!amp || stream16) return;
            block.Add(A($"{name} branch cast to float32 (N, C)", n * c));
            blockBack.Add(A($"d {name} branch cast to 16 bits (N, C)", n * c, 2));
        }
        // The attention workspace: the row log-sum-exp (B, H, T) the forward keeps and the backward kernel's scratch of that size.
        long lse = n * heads;

        if (m.Family == ModelFamily.Gpt)
        {
            // x + attn(ln_1(x)); x + mlp(ln_2(x)). LayerNorm keeps mean and rstd (N each). The GPU backend runs QkvAttention
            // as its composite: q, k, v copied out of (B, T, 3C) as (B, H, T, D), attention, y merged back (5 (N, C)).
            block.AddRange([.. Norm("ln_1"), A("ln_1 (N, C)", n * c), A("ln_1 mean", n), A("ln_1 rstd", n)]);
            Linear("c_attn", c, 3 * c, m.Bias, floatInput: true);
            block.AddRange([H("q, k, v heads, y, merged y (5 x (N, C))", n * c, count: 5), A("attention lse (B, H, T)", lse)]);
            Linear("attn.c_proj", c, c, m.Bias, floatInput: false);
            Residual("attention");
            block.AddRange([S("residual (N, C)", n * c), .. Norm("ln_2"), A("ln_2 (N, C)", n * c), A("ln_2 mean", n), A("ln_2 rstd", n)]);
            Linear("c_fc", c, f, m.Bias, floatInput: true);
            block.Add(H("gelu (N, F)", n * f));
            Linear("mlp.c_proj", f, c, m.Bias, floatInput: false);
            Residual("mlp");
            block.Add(S("residual (N, C)", n * c));
            blockBack.AddRange([.. NormBack("ln_1"), .. NormBack("ln_2")]);
            // Backward: GELU's, LN_2's, the residual sum, the composite attention's (7 (N, C): dy heads, q, k, v, dq, dk, dv)
            // and the copies of dq, dk, dv back out of the heads (3), d qkv assembled (3), LN_1's.
            blockBack.AddRange([H("d gelu (N, F)", n * f), A("d ln_2 input (N, C)", n * c), S("d residual sum (N, C)", n * c),
                H("attention backward (7 x (N, C))", n * c, count: 7), A("attention backward scratch (B, H, T)", lse), H("dq, dk, dv out of the heads (3 x (N, C))", n * c, count: 3),
                H("d qkv (N, 3C)", n * 3 * c), A("d ln_1 input (N, C)", n * c)]);
        }
        else
        {
            // x + o(attention(rope(q(rms(x))), rope(k(rms(x))), v(rms(x)))); x + down(silu(gate(rms(x))) * up(rms(x))).
            // RoPE is composed: 4 products and 2 sums of half width, then the halves stacked (4 (N, C) for q); its tables
            // are in q's dtype (16-bit under autocast, as Hugging Face's Llama casts cos and sin to q's dtype).
            long ropeTable = r.Seq * (m.HeadSize / 2);
            block.AddRange([.. Norm("input rms"), A("input rms (N, C)", n * c), A("rms rstd", n)]);
            Linear("q_proj", c, c, false, floatInput: true);
            Linear("k_proj", c, kv, false, floatInput: true);
            Linear("v_proj", c, kv, false, floatInput: true);
            block.AddRange([H("rope q: 6 half-width products and sums", n * c / 2, count: 6), H("rope q stacked (N, C)", n * c), H("rope k: 6 half-width", n * kv / 2, count: 6), H("rope k stacked (N, Ckv)", n * kv), H("attention y (N, C)", n * c), A("attention lse (B, H, T)", lse),
                H("v made contiguous (N, Ckv)", n * kv), H("heads side by side (N, C)", n * c)]);
            Linear("o_proj", c, c, false, floatInput: false);
            Residual("attention");
            block.AddRange([S("residual (N, C)", n * c), .. Norm("post rms"), A("post rms (N, C)", n * c), A("rms rstd", n)]);
            Linear("gate_proj", c, f, false, floatInput: true);
            Linear("up_proj", c, f, false, floatInput: true);
            block.AddRange([H("silu (N, F)", n * f), H("silu * up (N, F)", n * f)]);
            Linear("down_proj", f, c, false, floatInput: false);
            Residual("mlp");
            block.Add(S("residual (N, C)", n * c));
            blockBack.AddRange([.. NormBack("input rms"), .. NormBack("post rms")]);
            // Backward: the product's two gradients, SiLU's derivative composed (7 (N, F)), the sum of gate's and up's input
            // gradients, the norms', the residual sum, attention's (2 (N, C) + 3 (N, Ckv)), the copies of dq, dk, dv out of
            // the heads, RoPE's (6.5 x its input, plus 4 table-sized sums each for q and k), the sum of q's, k's, v's input gradients.
            blockBack.AddRange([H("d silu, d up (N, F)", n * f, count: 2), H("silu derivative composed (N, F)", n * f, count: 7), A("d gate + d up (N, C)", n * c),
                A("d post rms input (N, C)", n * c), S("d residual sum (N, C)", n * c),
                H("attention backward (N, C)", n * c, count: 2), H("attention backward (N, Ckv)", n * kv, count: 3), A("attention backward scratch (B, H, T)", lse),
                H("dq out of the heads (N, C)", n * c), H("dk, dv out of the heads (N, Ckv)", n * kv, count: 2),
                H("rope backward q: 11 half-width gradients and sums", n * c / 2, count: 11), H("rope backward q: the pairs (N, C)", n * c),
                H("rope backward k: 11 half-width", n * kv / 2, count: 11), H("rope backward k: the pairs (N, Ckv)", n * kv),
                A("d q + d k + d v inputs (N, C)", n * c), A("d input rms input (N, C)", n * c)]);
            blockBack.Add(H("rope backward: a product's gradient summed to the (T, D/2) table", ropeTable, count: 8));
        }

        // The final norm (LayerNorm: mean and rstd; RMSNorm: rstd), the head's logits (N, V), the loss and its row
        // statistics, the cross-entropy kernel's scratch; backward: d loss, d logits (N, V), d x, d norm input; loss.Item().
        // Under autocast the head is a Linear like the others: its input cast to 16 bits, 16-bit logits that cross-entropy
        // (a float32-list op) casts back up; backward the float32 d logits cast down, d x cast up.
        List<Alloc> head = [.. Norm("final norm"), A("final norm (N, C)", n * c), A("norm mean", n), H("logits (N, V)", n * v), A("loss", 1), A("loss rows", n), A("cross-entropy scratch", 2 * n)];
        if (m.Family == ModelFamily.Gpt) head.Add(A("norm rstd", n));
        List<Alloc> headBack = [A("d loss", 1), A("d logits (N, V)", n * v), A("cross-entropy backward scratch", 1), H("d final norm (N, C)", n * c),
            A("d final norm input (N, C)", n * c), A("loss value", 2), .. NormBack("final norm")];
        if (amp)
        {
            head.AddRange([A("final norm cast to 16 bits (N, C)", n * c, 2), A("logits cast to float32 (N, V)", n * v)]);
            headBack.AddRange([A("d logits cast to 16 bits (N, V)", n * v, 2), A("d final norm cast back to float32 (N, C)", n * c)]);
            if (!lora) headBack.Add(A("d head weight in 16 bits (V, C)", v * c, 2));
        }

        var kept = new List<Alloc> { S("block output (N, C)", n * c), S("block input gradient (N, C)", n * c) };
        var recompute = new List<Alloc> { S("copy of the output gradient (N, C)", n * c) };
        return new Step(embedForward, block, head, headBack, blockBack, embedBackward, kept, recompute);
    }
}
