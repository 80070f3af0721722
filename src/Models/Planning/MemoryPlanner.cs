namespace ManagedTensor.Models.Planning;

/// <summary>
/// Predicts the peak device memory of one training step of a GPT or Llama shape under a recipe, before anything is
/// allocated, the way this engine's caching allocator will count it (src/Engine/Gpu/GpuAllocator.cs): every tensor is a
/// block of its size class (powers of two up to 1 MiB, then multiples of 2 MiB), and a step's tensors live until the
/// memory scope that made them ends (a micro-batch's, <see cref="Training.MicroBatch"/>; a checkpointed block's,
/// <see cref="Checkpoint"/>). So, with W the weights, O the optimizer state, G one set of gradients and A the
/// activations:
///   peak = W + O + G (twice when accumulating: a micro-batch's new gradients before they are added) + A
///   A without checkpointing = every tensor one micro-batch's forward and backward make (<see cref="EngineActivations"/>)
///   A with checkpointing   = embedding and head (forward and backward) + 2 (B, T, C) per block (its output, kept by the
///                            forward; its input gradient, kept by the backward) + the larger of one block's forward and
///                            backward (with its weights' 16-bit copies under autocast) and the embedding's backward
/// O is 2 moments per trained value (8 bytes in float32; 2 bytes plus a float32 scale per 2048 with 8-bit AdamW), on
/// the host instead with optimizer offload. LoRA trains A (r, in) and B (out, r) beside every block matrix, float32.
/// </summary>
public static class MemoryPlanner
{
    public static MemoryPlan Predict(ModelShape m, PlanRecipe r)
    {
        var parts = new List<PlanPart>();
        long rounding = 0;
        long Block(long bytes, long count = 1)
        {
            long b = bytes == 0 ? 0 : DeviceMemory.BlockBytes(bytes);
            rounding += (b - bytes) * count;
            return b * count;
        }
        void Add(string name, MemoryCategory category, long bytes, string formula, bool host = false)
        {
            if (bytes > 0) parts.Add(new PlanPart(name, category, bytes, formula, host));
        }

        // ---- weights: block matrices in the recipe's format, embeddings/head in its float dtype, norms and biases float32 ----
        var weights = m.Weights().ToList();
        // Full training under autocast keeps float32 master weights (their 16-bit copies are counted with the activations).
        bool masters = !r.Lora && r.Autocast;
        DType FormatOf(WeightTensor w) => w.Kind switch
        {
            WeightKind.Vector => DType.F32,
            WeightKind.Matrix when r.Quantizes(w.Cols) => r.MatrixFormat,
            WeightKind.Matrix when r.MatrixFormat.IsQuantized() => masters ? DType.F32 : r.FloatDType, // rows that are not whole blocks stay float
            _ when masters => DType.F32,
            WeightKind.Matrix => r.MatrixFormat,
            _ => r.FloatDType,
        };
        foreach (var group in weights.GroupBy(FormatOf))
        {
            long bytes = group.Sum(w => Block(group.Key.ByteCount(w.Elements)));
            Add($"weights {group.Key}", MemoryCategory.Weights, bytes, $"{group.Sum(w => w.Elements):N0} values x {BytesPerValue(group.Key)} B");
        }

        // ---- what is trained: every float weight (full), or LoRA's A and B beside every block matrix (base frozen) ----
        var trained = new List<(long Elements, DType DType)>();
        if (r.Lora)
        {
            foreach (var w in weights.Where(w => w.Kind == WeightKind.Matrix))
            {
                trained.Add((r.LoraRank * w.Cols, DType.F32));
                trained.Add((w.Rows * r.LoraRank, DType.F32));
            }
            Add($"LoRA adapters r={r.LoraRank}", MemoryCategory.Weights, trained.Sum(t => Block(t.DType.ByteCount(t.Elements))),
                $"{trained.Sum(t => t.Elements):N0} values (r x (in + out) per matrix) x 4 B");
        }
        else
        {
            foreach (var w in weights.Where(w => !FormatOf(w).IsQuantized()))
                trained.Add((w.Elements, FormatOf(w)));
        }
        long trainedCount = trained.Sum(t => t.Elements);

        // ---- gradients: one per trained tensor, in its dtype; a second set while a later micro-batch's are added in ----
        long grads = trained.Sum(t => Block(t.DType.ByteCount(t.Elements)));
        Add("gradients", MemoryCategory.Grads, grads, $"{trainedCount:N0} trained values x their bytes");
        if (r.GradAccum > 1) Add("gradients of the micro-batch being added", MemoryCategory.Grads, grads, "a second set while accumulating (--grad-accum > 1)");

        // ---- optimizer: AdamW's two moments per trained value ----
        if (r.Optimizer8Bit)
        {
            long bytes = trained.Sum(t => 2 * (t.Elements + 4 * ((t.Elements + PlanRecipe.Optimizer8BitBlock - 1) / PlanRecipe.Optimizer8BitBlock)));
            Add("AdamW 8-bit moments", MemoryCategory.OptimizerState, r.OptimizerOffload ? bytes : trained.Sum(t =>
                    2 * (Block(t.Elements) + Block(4 * ((t.Elements + PlanRecipe.Optimizer8BitBlock - 1) / PlanRecipe.Optimizer8BitBlock)))),
                "2 x (1 B per value + 4 B per block of 2048)", r.OptimizerOffload);
        }
        else
        {
            Add("AdamW moments", MemoryCategory.OptimizerState, r.OptimizerOffload ? trained.Sum(t => 2 * t.DType.ByteCount(t.Elements)) : trained.Sum(t => Block(t.DType.ByteCount(t.Elements), 2)),
                "2 x trained values x their bytes", r.OptimizerOffload);
        }

        // ---- activations: what this engine's step allocates (EngineActivations), with or without checkpointing ----
        var acts = EngineActivations.Of(m, r);
        long Sum(IEnumerable<EngineActivations.Alloc> list) => list.Sum(a => Block(a.Bytes, a.Count));
        // Under autocast every matmul casts its float32 weight to 16 bits (the block matrices and the head: a tied head casts
        // the token embedding; a LoRA base stored in float32 too), each matmul its own copy (the engine keeps no cast cache:
        // src/Engine/Autocast.cs). A copy lives as long as the memory scope it was made in: the micro-batch's, or under
        // checkpointing a block's (the forward's scope and the recomputation's free theirs), so a checkpointed step holds the
        // head's copy and one block's. Every layer has the same matrices, so one block's are the first Layers-th of them.
        bool CastForMatMul(WeightTensor w) => r.Autocast && FormatOf(w) == DType.F32 &&
            (w.Kind is WeightKind.Matrix or WeightKind.Head || w.Kind == WeightKind.Embedding && m.TiedHead && w.Rows == m.Vocab);
        var blockCopies = weights.Where(w => w.Kind == WeightKind.Matrix && CastForMatMul(w)).ToList();
        long headCopies = weights.Where(w => w.Kind != WeightKind.Matrix && CastForMatMul(w)).Sum(w => Block(2 * w.Elements));
        const string copiesFormula = "float32 matrices (and the head) cast to 16 bits for their matmuls, x 2 B";

        long embedHead = Sum(acts.EmbedForward) + Sum(acts.HeadForward) + Sum(acts.HeadBackward), embedBackward = Sum(acts.EmbedBackward);
        long blockForward = Sum(acts.BlockForward), blockBackward = Sum(acts.BlockBackward);
        if (r.Checkpointing)
        {
            Add("embedding and head (forward + backward)", MemoryCategory.Activations, embedHead, "ids, embeddings, final norm, logits (B, T, V), loss and their gradients");
            long kept = Sum(acts.CheckpointKept);
            Add("block inputs kept (checkpointing)", MemoryCategory.Activations, m.Layers * kept, $"{m.Layers} layers x (output + input gradient) (B, T, C)");
            // The embedding's backward (a tied head's (V, C) gradients, GPT's position gradient) runs after the first block's
            // recomputation has been freed, so the peak holds the larger of the two, not both: counting both put the
            // measured checkpointed Llama steps 3% (float32) and 6% (bf16 autocast) under the plan.
            long oneBlockCopies = blockCopies.Take(blockCopies.Count / m.Layers).Sum(w => Block(2 * w.Elements));
            long recomputed = blockForward + blockBackward + Sum(acts.CheckpointRecompute) + oneBlockCopies;
            if (recomputed >= embedBackward)
                Add("one block recomputed (forward + backward)", MemoryCategory.Activations, recomputed,
                    r.Autocast ? "the block being backpropagated with its 16-bit weight copies, freed after it" : "the block being backpropagated, freed after it");
            else
                Add("embedding backward", MemoryCategory.Activations, embedBackward, "the embedding's gradients, made after the last recomputed block is freed");
            if (r.Autocast) Add("16-bit head copy (autocast)", MemoryCategory.Activations, headCopies, copiesFormula);
        }
        else
        {
            Add("embedding and head (forward + backward)", MemoryCategory.Activations, embedHead + embedBackward, "ids, embeddings, final norm, logits (B, T, V), loss and their gradients");
            Add("blocks forward", MemoryCategory.Activations, m.Layers * blockForward, $"{m.Layers} layers x {FormatBytes(blockForward)} (norms, projections, attention, MLP)");
            Add("blocks backward", MemoryCategory.Activations, m.Layers * blockBackward, $"{m.Layers} layers x {FormatBytes(blockBackward)} (input gradients of each op)");
            if (r.Autocast) Add("16-bit weight copies (autocast)", MemoryCategory.Activations, blockCopies.Sum(w => Block(2 * w.Elements)) + headCopies, copiesFormula);
        }
        // QMatMul's backward (src/Engine/Ops/QuantOps.cs) decodes a frozen block-format W to the gradient's dtype (float32, or
        // 16 bits under autocast) to form dx = dy W, as bitsandbytes does, and frees it at once: one (out, in) W at a time.
        // Before that free, every quantized Linear's decoded copy stayed live to the end of the micro-batch, and the measured
        // QLoRA and frozen-Q4_0 steps were 8-30% above a plan without them.
        int decodedBytes = r.Autocast ? 2 : 4;
        long decoded = weights.Where(w => w.Kind == WeightKind.Matrix && r.Quantizes(w.Cols)).Select(w => Block(decodedBytes * w.Elements)).DefaultIfEmpty(0).Max();
        Add($"QMatMul backward: one W decoded to {(r.Autocast ? "16 bits" : "float32")}", MemoryCategory.Activations, decoded,
            $"the largest quantized matrix x {decodedBytes} B, freed after its input gradient");

        if (m.Family == ModelFamily.Llama)
        {
            long rows = Math.Max(256, r.Seq); // RotaryEmbedding.Tables: at least 256 positions, cached per device and dtype (q's: 16-bit under autocast)
            int bytes = r.Autocast ? 2 : 4;
            Add("RoPE cos and sin tables", MemoryCategory.Workspace, Block(rows * (m.HeadSize / 2) * bytes, 2), $"2 x ({rows}, head size / 2) x {bytes} B");
        }
        if (r.RuntimeReserve > 0) Add("CUDA context and libraries", MemoryCategory.Workspace, r.RuntimeReserve, "what the runtime holds before any tensor");
        var result = new MemoryPlan(m, r, parts, trainedCount) { RoundingBytes = rounding };
        return result;
    }

    private static string BytesPerValue(DType t) => t.IsQuantized() ? $"{(double)t.ByteCount(1 << 16) / (1 << 16):0.###}" : t.SizeOf().ToString();

    public static string FormatBytes(long bytes) => DeviceMemory.FormatBytes(bytes);
}
