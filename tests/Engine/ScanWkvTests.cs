using ManagedTensor.Models.IO;
using ManagedTensor.Tests.Autograd;
using ManagedTensor.Tests.IO;
using Xunit;

namespace ManagedTensor.Tests.Engine;

/// <summary>
/// SelectiveScan and Wkv6 against independent float64 PyTorch references (tests/fixtures/ssm: mamba's
/// selective_scan_ref and RWKV-6's reference loop), outputs and every gradient, at odd sizes with sequence lengths
/// that are not a multiple of the chunk; both schedules (sequential, chunk-parallel) and several chunk lengths,
/// including 1 and longer than the sequence; the composite fallback; finite differences; the single-step forms;
/// and the errors for mismatched shapes.
/// </summary>
public sealed class ScanWkvTests
{
    private static readonly Dictionary<string, Tensor> Fixture = SafeTensors.Load(Fixtures.Path("ssm/scan_wkv.safetensors"));

    private static Tensor F(string name) => Fixture[name];

    public static TheoryData<int, bool> Schedules => new() { { 1, true }, { 8, true }, { 8, false }, { 13, true }, { 64, true }, { 64, false } };

    [Theory]
    [MemberData(nameof(Schedules))]
    public void Selective_scan_matches_mambas_reference_in_values_and_gradients(int chunk, bool parallel)
    {
        string[] names = ["x", "delta", "A", "B", "C", "D"];
        var leaves = names.Select(n => { var t = F("scan." + n).Clone().Detach(); t.RequiresGrad = true; return t; }).ToArray();
        var y = Tensor.SelectiveScan(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], leaves[5], chunk, parallel);
        TestUtil.AssertClose(F("scan.y"), y, 1e-10, 1e-10, "y");
        (y * F("scan.dy")).Sum().Backward();
        for (int i = 0; i < names.Length; i++)
            TestUtil.AssertClose(F("scan.grad_" + names[i]), leaves[i].Grad!, 1e-9, 1e-9, "grad " + names[i]);
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void Wkv6_matches_rwkvs_reference_in_values_and_gradients(int chunk, bool parallel)
    {
        string[] names = ["r", "k", "v", "logw", "u"];
        var leaves = names.Select(n => { var t = F("wkv." + n).Clone().Detach(); t.RequiresGrad = true; return t; }).ToArray();
        var y = Tensor.Wkv6(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], chunk, parallel);
        TestUtil.AssertClose(F("wkv.y"), y, 1e-10, 1e-10, "y");
        (y * F("wkv.dy")).Sum().Backward();
        for (int i = 0; i < names.Length; i++)
            TestUtil.AssertClose(F("wkv.grad_" + names[i]), leaves[i].Grad!, 1e-9, 1e-9, "grad " + names[i]);
    }

    [Fact]
    public void Float32_kernels_agree_with_the_float64_reference()
    {
        var y = Tensor.SelectiveScan(F("scan.x").To(DType.F32), F("scan.delta").To(DType.F32), F("scan.A").To(DType.F32),
            F("scan.B").To(DType.F32), F("scan.C").To(DType.F32), F("scan.D").To(DType.F32), chunk: 16);
        TestUtil.AssertClose(F("scan.y"), y.To(DType.F64), 1e-4, 1e-4, "scan y (F32)");
        var w = Tensor.Wkv6(F("wkv.r").To(DType.F32), F("wkv.k").To(DType.F32), F("wkv.v").To(DType.F32), F("wkv.logw").To(DType.F32), F("wkv.u").To(DType.F32), chunk: 4);
        TestUtil.AssertClose(F("wkv.y"), w.To(DType.F64), 1e-4, 1e-4, "wkv y (F32)");
    }

    [Fact]
    public void Finite_differences_agree_with_the_fused_backward_at_tiny_odd_sizes()
    {
        // B 1, L 7, D 3, N 2, chunk 3: three chunks, the last one short.
        var x = TestUtil.RandomTensor([1, 7, 3], 1);
        var delta = (TestUtil.RandomTensor([1, 7, 3], 2).MulScalar(0.5)).Exp().MulScalar(0.3);
        var a = TestUtil.RandomTensor([3, 2], 3).Exp().Neg();
        GradCheck.Check(t => Tensor.SelectiveScan(t[0], t[1], t[2], t[3], t[4], t[5], chunk: 3),
            [x, delta, a, TestUtil.RandomTensor([1, 7, 2], 4), TestUtil.RandomTensor([1, 7, 2], 5), TestUtil.RandomTensor([3], 6)]);
        var logw = TestUtil.RandomTensor([1, 5, 2, 3], 7).Exp().Neg();
        GradCheck.Check(t => Tensor.Wkv6(t[0], t[1], t[2], t[3], t[4], chunk: 2),
            [TestUtil.RandomTensor([1, 5, 2, 3], 8), TestUtil.RandomTensor([1, 5, 2, 3], 9), TestUtil.RandomTensor([1, 5, 2, 3], 10), logw, TestUtil.RandomTensor([2, 3], 11)]);
    }

    [Fact]
    public void The_composite_fallback_and_the_single_step_form_give_the_kernels_output()
    {
        // The composite is what a backend without a kernel runs: call it through the registry's definition.
        var scanIn = new[] { "x", "delta", "A", "B", "C", "D" }.Select(n => F("scan." + n)).ToArray();
        var composite = OpRegistry.Get(ScanOps.SelectiveScan).Fallback!(scanIn, new SelectiveScanAttrs(8));
        var kernel = Tensor.Apply(ScanOps.SelectiveScan, new SelectiveScanAttrs(8), scanIn);
        TestUtil.AssertClose(kernel[0], composite[0], 1e-12, 1e-12, "scan y");
        TestUtil.AssertClose(kernel[1], composite[1], 1e-12, 1e-12, "scan chunk states");

        var wkvIn = new[] { "r", "k", "v", "logw", "u" }.Select(n => F("wkv." + n)).ToArray();
        composite = OpRegistry.Get(WkvOps.Wkv6).Fallback!(wkvIn, new WkvAttrs(4));
        kernel = Tensor.Apply(WkvOps.Wkv6, new WkvAttrs(4), wkvIn);
        TestUtil.AssertClose(kernel[0], composite[0], 1e-12, 1e-12, "wkv y");
        TestUtil.AssertClose(kernel[1], composite[1], 1e-12, 1e-12, "wkv chunk states");

        // The backward ops' composites (the GPU's backward until it has fused kernels) against PyTorch's gradients.
        var gradsScan = OpRegistry.Get(ScanOps.SelectiveScanBackward).Fallback!([F("scan.dy"), .. scanIn, Tensor.Apply(ScanOps.SelectiveScan, new SelectiveScanAttrs(8), scanIn)[1]], new SelectiveScanAttrs(8));
        string[] scanNames = ["x", "delta", "A", "B", "C", "D"];
        for (int i = 0; i < 6; i++) TestUtil.AssertClose(F("scan.grad_" + scanNames[i]), gradsScan[i], 1e-9, 1e-9, "composite scan grad " + scanNames[i]);
        var gradsWkv = OpRegistry.Get(WkvOps.Wkv6Backward).Fallback!([F("wkv.dy"), .. wkvIn, kernel[1]], new WkvAttrs(4));
        string[] wkvNames = ["r", "k", "v", "logw", "u"];
        for (int i = 0; i < 5; i++) TestUtil.AssertClose(F("wkv.grad_" + wkvNames[i]), gradsWkv[i], 1e-9, 1e-9, "composite wkv grad " + wkvNames[i]);
    }

    [Fact]
    public void Mismatched_shapes_are_refused_with_the_tensor_named()
    {
        var x = Tensor.Zeros([2, 5, 4], DType.F64);
        var a = Tensor.Zeros([4, 3], DType.F64);
        var bc = Tensor.Zeros([2, 5, 3], DType.F64);
        var d = Tensor.Zeros([4], DType.F64);
        var e = Assert.Throws<ArgumentException>(() => Tensor.SelectiveScan(x, x, a, Tensor.Zeros([2, 5, 2], DType.F64), bc, d));
        Assert.Contains("B [2, 5, 2]", e.Message);
        Assert.Contains("N = 3", e.Message);
        e = Assert.Throws<ArgumentException>(() => Tensor.SelectiveScan(x, x, Tensor.Zeros([5, 3], DType.F64), bc, bc, d));
        Assert.Contains("A [5, 3]", e.Message);
        e = Assert.Throws<ArgumentException>(() => ScanOps.Step(Tensor.Zeros([2, 4, 2], DType.F64), Tensor.Zeros([2, 4], DType.F64), Tensor.Zeros([2, 4], DType.F64), a,
            Tensor.Zeros([2, 3], DType.F64), Tensor.Zeros([2, 3], DType.F64), d));
        Assert.Contains("state", e.Message);

        var r = Tensor.Zeros([1, 3, 2, 4], DType.F64);
        e = Assert.Throws<ArgumentException>(() => Tensor.Wkv6(r, r, Tensor.Zeros([1, 3, 2, 5], DType.F64), r, Tensor.Zeros([2, 4], DType.F64)));
        Assert.Contains("v [1, 3, 2, 5]", e.Message);
        e = Assert.Throws<ArgumentException>(() => Tensor.Wkv6(r, r, r, r, Tensor.Zeros([2, 3], DType.F64)));
        Assert.Contains("u [2, 3]", e.Message);
        e = Assert.Throws<ArgumentException>(() => WkvOps.Step(Tensor.Zeros([1, 2, 4, 3], DType.F64), r.Narrow(1, 0, 1).Squeeze(1), r.Narrow(1, 0, 1).Squeeze(1),
            r.Narrow(1, 0, 1).Squeeze(1), r.Narrow(1, 0, 1).Squeeze(1), Tensor.Zeros([2, 4], DType.F64)));
        Assert.Contains("state [1, 2, 4, 3]", e.Message);
    }
}
