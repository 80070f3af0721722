using ILGPU;
using ManagedTensor.Gpu.Kernels;

namespace ManagedTensor.Gpu.Gemm;

/// <summary>
/// Plain C# twins of the warp-wide tensor-core instructions, for the CPU accelerator. Each lane computes
/// exactly the registers the hardware would give it, fetching other lanes' registers with shuffles,
/// so the fragment layouts and ldmatrix addressing of <see cref="HgemmMma"/> are tested without a GPU.
/// Layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with g = lane / 4 and t = lane % 4:
///   A (16 x 16, row): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
///   B (16 x 8, col):  b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
///   C (16 x 8):       c0, c1 = C[g][2t], C[g][2t+1]; c2, c3 = C[g+8][2t], C[g+8][2t+1]
/// Each 32-bit register holds two 16-bit values, the lower-indexed one in the low half.
/// </summary>
internal static class WarpMma
{
    /// <summary>ldmatrix.x4 (.trans when <paramref name="trans"/>): <paramref name="rowStart"/> is the element index in
    /// <paramref name="smem"/> of the 8-element row this lane points at (row lane % 8 of matrix lane / 8).</summary>
    public static U32x4 LdMatrixX4(ArrayView<ushort> smem, int rowStart, bool trans)
    {
        int lane = Warp.LaneIdx;
        return new U32x4
        {
            X = Matrix(smem, rowStart, 0, lane, trans),
            Y = Matrix(smem, rowStart, 1, lane, trans),
            Z = Matrix(smem, rowStart, 2, lane, trans),
            W = Matrix(smem, rowStart, 3, lane, trans),
        };
    }

    private static uint Matrix(ArrayView<ushort> smem, int rowStart, int j, int lane, bool trans)
    {
        if (!trans)
        {
            // Row lane / 4 of matrix j, elements 2 (lane % 4) and +1.
            int row = Warp.Shuffle(rowStart, j * 8 + lane / 4);
            return smem[row + 2 * (lane % 4)] | ((uint)smem[row + 2 * (lane % 4) + 1] << 16);
        }
        // Transposed: column lane / 4 of rows 2 (lane % 4) and 2 (lane % 4) + 1.
        int row0 = Warp.Shuffle(rowStart, j * 8 + 2 * (lane % 4));
        int row1 = Warp.Shuffle(rowStart, j * 8 + 2 * (lane % 4) + 1);
        return smem[row0 + lane / 4] | ((uint)smem[row1 + lane / 4] << 16);
    }

    /// <summary>mma.sync.m16n8k16.row.col with fp32 accumulation: D = A B + C.</summary>
    public static Float4 Emulate<TFormat>(U32x4 a, U32x2 b, Float4 c) where TFormat : struct, IHalfFormat
    {
        int lane = Warp.LaneIdx;
        int g = lane / 4, t = lane % 4;
        for (int q = 0; q < 4; q++)
        {
            // Lane g * 4 + q holds A[g][2q..2q+1] (a0), A[g+8][2q..] (a1), A[g][2q+8..] (a2), A[g+8][2q+8..] (a3);
            // lane n * 4 + q holds B[2q..2q+1][n] (b0) and B[2q+8..2q+9][n] (b1).
            // One shuffle moves a whole fragment (a struct): 3 per q instead of 8.
            var aq = Warp.Shuffle(a, g * 4 + q);
            var bn0 = Warp.Shuffle(b, 2 * t * 4 + q);
            var bn1 = Warp.Shuffle(b, (2 * t + 1) * 4 + q);
            uint a0 = aq.X, a1 = aq.Y, a2 = aq.Z, a3 = aq.W;
            uint b0n0 = bn0.X, b1n0 = bn0.Y, b0n1 = bn1.X, b1n1 = bn1.Y;
            c.X += Dot2<TFormat>(a0, b0n0) + Dot2<TFormat>(a2, b1n0);
            c.Y += Dot2<TFormat>(a0, b0n1) + Dot2<TFormat>(a2, b1n1);
            c.Z += Dot2<TFormat>(a1, b0n0) + Dot2<TFormat>(a3, b1n0);
            c.W += Dot2<TFormat>(a1, b0n1) + Dot2<TFormat>(a3, b1n1);
        }
        return c;
    }

    private static float Dot2<TFormat>(uint x, uint y) where TFormat : struct, IHalfFormat
    {
        var f = default(TFormat);
        return f.Load((ushort)x) * f.Load((ushort)y) + f.Load((ushort)(x >> 16)) * f.Load((ushort)(y >> 16));
    }
}
