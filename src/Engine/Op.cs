namespace ManagedTensor;

/// <summary>
/// The op set: the contract between the front end, autograd and every backend.
/// Each comment gives inputs -> outputs as the backend sees them. "same shape" means the front end has
/// already broadcast the inputs to views (stride 0 where broadcast) of the output's shape; inputs may
/// be non-contiguous views, outputs are contiguous unless noted.
/// Movement ops (Reshape .. Slice) never reach a backend: they make views; they are in the enum so that
/// autograd records them like any other op.
/// Elementwise ops (unary, binary, where) must also work in place: output 0 may be the very same view
/// as input 0 (element i is read before element i is written, and by the same thread).
/// </summary>
public enum Op
{
    // ---- movement (views; recorded for autograd, never executed by a backend) ----
    Reshape,     // x -> view                                   attrs: ShapeAttrs(input shape)
    Permute,     // x -> view                                   attrs: PermuteAttrs(dims)
    Expand,      // x -> view with stride 0 on broadcast dims   attrs: ShapeAttrs(input shape)
    Slice,       // x -> view narrowed on one axis              attrs: SliceAttrs(axis, start, length)

    // ---- data movement executed by backends ----
    Copy,        // src -> dst, same shape, any strides on both sides, dtype conversion allowed (Cast)
    Fill,        // () -> out                                   attrs: ScalarAttrs(value)
    RandUniform, // () -> out (float) in [low, high)            attrs: RandomAttrs
    RandNormal,  // () -> out (float) ~ N(mean, std)            attrs: RandomAttrs
    Cat,         // x0..xn -> out along axis (front end: Copy into slices of out; never executed)

    // ---- unary elementwise: x -> out, same shape and dtype ----
    Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, GeluTanh, Silu,
    Erf,
    AddScalar,   // x + c                                      attrs: ScalarAttrs(c)
    MulScalar,   // x * c                                      attrs: ScalarAttrs(c)
    PowScalar,   // x ^ c                                      attrs: ScalarAttrs(c)
    Clamp,       // min(max(x, lo), hi)                        attrs: ClampAttrs(lo, hi)

    // ---- binary elementwise: a, b -> out, same shape (broadcast views) ----
    Add, Sub, Mul, Div, Pow, Maximum, Minimum,
    Eq, Ne, Lt, Le, Gt, Ge,   // out is U8 (1 = true), inputs same dtype
    GeluBackward, // dy, x -> dx = dy * gelu'(x) (exact GELU), float only: one fused pass for autograd

    // ---- ternary ----
    Where,       // cond (U8), a, b -> out, same shape

    // ---- reductions: x -> out with keepdim shape (size 1 on reduced axes); attrs: ReduceAttrs ----
    Sum, Mean, Max, Min,
    ArgMax,      // out I64, exactly one axis
    Var,         // attrs.Correction (1 = unbiased)

    // ---- linear algebra ----
    MatMul,      // a (..., M, K), b (..., K, N) -> out (..., M, N); batch dims equal (broadcast views);
                 // the last two dims of a and b may have any strides (transposed views are the fast case)
    QMatMul,     // x (..., K) float, w (N, K) in a block format -> y (..., N) = x w^T (declared in Ops/QuantOps.cs)

    // ---- neural-network ops over the last axis ----
    Softmax,     // x (..., C) -> out (..., C)
    LogSoftmax,  // x (..., C) -> out (..., C)
    LayerNorm,   // x (..., C), weight (C) or none, bias (C) or none -> y (..., C), mean (rows), rstd (rows)
                 // attrs: NormAttrs(eps). Missing weight/bias are passed as empty tensors (0 elements).
    LayerNormBackward, // dy, x, weight|empty, mean, rstd -> dx, dweight|empty, dbias|empty
    RmsNorm,     // x (..., C), weight (C) or empty -> y (..., C), rstd (rows)          attrs: NormAttrs
    RmsNormBackward,   // dy, x, weight|empty, rstd -> dx, dweight|empty

    // ---- indexing ----
    IndexSelect, // x, idx (1-D I32/I64) -> out: rows of x along axis    attrs: AxisAttrs(axis)
    IndexAdd,    // dst (in/out, passed as output 0), idx (1-D), src: dst[.., idx[i], ..] += src[.., i, ..]   attrs: AxisAttrs
    Gather,      // x, idx (same rank, I32/I64) -> out (idx shape): out[i][j] = x[i][idx[i][j]] (axis 1)   attrs: AxisAttrs
    ScatterAdd,  // dst (in/out, output 0), idx, src: dst[i][idx[i][j]] += src[i][j]                       attrs: AxisAttrs

    // ---- fused loss ----
    CrossEntropy,         // logits (N, C), targets (N) I32/I64 -> loss (scalar, mean over non-ignored), lse (N)
                          // attrs: CrossEntropyAttrs(ignoreIndex)
    CrossEntropyBackward, // dloss (scalar), logits, targets, lse -> dlogits (N, C)        attrs: CrossEntropyAttrs

    // ---- convolution and pooling, NCHW ----
    Conv2d,               // x (N, C, H, W), w (O, C/g, KH, KW), bias (O) or empty -> y (N, O, OH, OW)   attrs: Conv2dAttrs
    Conv2dBackwardInput,  // dy, w -> dx (shape of x)                                     attrs: Conv2dAttrs
    Conv2dBackwardWeight, // dy, x -> dw (shape of w)                                     attrs: Conv2dAttrs
    MaxPool2d,            // x -> y, argmax (I32, flat index into each input plane H*W)   attrs: Pool2dAttrs
    MaxPool2dBackward,    // dy, argmax -> dx (shape of x)                                 attrs: Pool2dAttrs
    AvgPool2d,            // x -> y (padding counted, as PyTorch's count_include_pad)      attrs: Pool2dAttrs
    AvgPool2dBackward,    // dy -> dx (shape of x)                                         attrs: Pool2dAttrs
    UpsampleNearest2d,    // x (N, C, H, W) -> y (N, C, H*s, W*s)                          attrs: ScaleAttrs(s)
    UpsampleNearest2dBackward, // dy -> dx (sum of each s x s block)                        attrs: ScaleAttrs(s)

    // ---- fused attention (flash-style: the T x S score matrix is never stored) ----
    Attention,            // q (B, H, T, D), k (B, Hkv, S, D), v (B, Hkv, S, D) -> out (B, H, T, D), lse (B, H, T)
                          // out = dropout(softmax(scale q k^T + mask)) v; lse = log-sum-exp of each score row
                          // (F32, F64 for F64 inputs; +inf for a row that sees no key, whose out is 0).
                          // H is a multiple of Hkv: query head h reads kv head h / (H / Hkv) (grouped-query).
                          // Causal: query i sees keys j <= i + S - T (aligned bottom right, as flash-attention).
                          // q is dense; k and v may be views with their last axis at stride 1 and any other
                          // strides, the same for both (the first S positions of a KV cache, read in place).
                          // attrs: AttentionAttrs
    AttentionBackward,    // dout, q, k, v, out, lse -> dq, dk, dv (scores recomputed tile by tile)   attrs: AttentionAttrs

    // ---- optimizer ----
    AdamWStep,   // outputs (in/out): param, m, v; inputs: grad                           attrs: AdamWAttrs

    // ---- user-defined ----
    Custom,      // a CustomFunction's forward, recorded as one node whose backward is the function's own
                 // (activation checkpointing, straight-through estimators); never executed by a backend.
                 // attrs: CustomAttrs
}

/// <summary>Per-op parameters. Each op documents which record it takes.</summary>
public abstract record OpAttrs;

public sealed record ScalarAttrs(double Value) : OpAttrs;
public sealed record ClampAttrs(double Min, double Max) : OpAttrs;
public sealed record ShapeAttrs(int[] Shape) : OpAttrs;
public sealed record PermuteAttrs(int[] Dims) : OpAttrs;
public sealed record SliceAttrs(int Axis, int Start, int Length) : OpAttrs;
public sealed record AxisAttrs(int Axis) : OpAttrs;
public sealed record CatAttrs(int Axis) : OpAttrs;

/// <summary>Axes are non-negative and sorted; the output keeps reduced axes as size 1.</summary>
public sealed record ReduceAttrs(int[] Axes, bool KeepDim, int Correction = 1) : OpAttrs;

public sealed record NormAttrs(double Eps) : OpAttrs;
public sealed record CrossEntropyAttrs(int IgnoreIndex = -100) : OpAttrs;

/// <summary>Counter-based random numbers: element i of the output uses Philox counter Offset + i, key Seed.</summary>
public sealed record RandomAttrs(ulong Seed, ulong Offset, double A, double B) : OpAttrs;

public sealed record Conv2dAttrs(int StrideH, int StrideW, int PadH, int PadW, int DilationH = 1, int DilationW = 1, int Groups = 1) : OpAttrs;
public sealed record Pool2dAttrs(int KernelH, int KernelW, int StrideH, int StrideW, int PadH, int PadW) : OpAttrs;
public sealed record ScaleAttrs(int Scale) : OpAttrs;

/// <summary>
/// Attention: <see cref="Scale"/> multiplies q k^T (usually 1 / sqrt(D)). Dropout on the attention weights
/// keeps entry (b, h, i, j) when Philox.Uniform(Seed, Offset + ((b H + h) T + i) S + j) >= DropoutP and
/// scales it by 1 / (1 - DropoutP), so every backend, and the backward pass, draws the same mask.
/// </summary>
public sealed record AttentionAttrs(bool Causal, double Scale, double DropoutP = 0, ulong Seed = 0, ulong Offset = 0) : OpAttrs
{
    /// <summary>
    /// The keep test in integers: uniform = (word >> 8) / 2^24 >= p exactly when (word >> 8) >= ceil(p 2^24),
    /// so CPU and GPU agree bit for bit (no float comparison at the boundary).
    /// </summary>
    public uint KeepThreshold => (uint)Math.Ceiling(DropoutP * 16777216.0);

    /// <summary>1 / (1 - p): kept weights are scaled so the expected output is unchanged.</summary>
    public double KeepScale => 1.0 / (1.0 - DropoutP);
}

/// <summary>The function object of a <see cref="Op.Custom"/> node (it also holds whatever its forward kept for its backward).</summary>
public sealed record CustomAttrs(CustomFunction Function) : OpAttrs;

/// <summary>One AdamW step at 1-based <see cref="Step"/> (bias correction uses it); decoupled weight decay.</summary>
public sealed record AdamWAttrs(double Lr, double Beta1, double Beta2, double Eps, double WeightDecay, int Step) : OpAttrs;
