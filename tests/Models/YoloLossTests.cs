using System.Text.Json;
using ManagedTensor.Models.Detection.Yolo;
using ManagedTensor.Tests.Llama;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// The task-aligned assigner and YOLOv8's loss against an independent PyTorch implementation written from
/// Ultralytics' code (tests/fixtures/yolo/make_loss_fixture.py, float64): three 64 x 64 images with 3, 0 and 1
/// boxes (two overlapping, so cells are claimed twice), random head outputs; the assigner's targets, the three
/// loss parts and the gradient of the total with respect to every output.
/// </summary>
public class YoloLossTests
{
    private static readonly JsonElement Case = JsonDocument.Parse(File.ReadAllText(RepoPaths.Of("tests", "fixtures", "yolo", "loss_case.json"))).RootElement;

    private static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(v => v.GetDouble()).ToArray();

    private static (Tensor[] Outputs, List<IReadOnlyList<GtBox>> Gts) Inputs(DType dtype)
    {
        var shapes = Case.GetProperty("output_shapes").EnumerateArray().Select(s => s.EnumerateArray().Select(v => v.GetInt32()).ToArray()).ToArray();
        var outputs = Case.GetProperty("outputs").EnumerateArray()
            .Select((o, i) => Tensor.FromArray(Doubles(o).Select(v => (double)(float)v).ToArray(), shapes[i]).To(dtype)).ToArray(); // float32 values, written with 9 digits
        foreach (var o in outputs) o.RequiresGrad = true;
        var gts = Case.GetProperty("gts").EnumerateArray().Select(img => (IReadOnlyList<GtBox>)img.EnumerateArray()
            .Select(b => { var v = Doubles(b); return new GtBox((int)v[0], v[1], v[2], v[3], v[4]); }).ToList()).ToList();
        return (outputs, gts);
    }

    [Fact]
    public void AssignerTargetsLossesAndGradientsMatchPyTorch()
    {
        var (outputs, gts) = Inputs(DType.F64);
        int nc = Case.GetProperty("classes").GetInt32(), r = Case.GetProperty("reg_max").GetInt32();
        var loss = YoloLoss.Compute(outputs, gts, nc, r, Case.GetProperty("height").GetInt32(), Case.GetProperty("width").GetInt32(), out var assigned);

        int a = assigned[0].Foreground.Length;
        var fg = Case.GetProperty("foreground").EnumerateArray().Select(v => v.GetInt32() != 0).ToArray();
        Assert.Equal(fg, assigned.SelectMany(x => x.Foreground).ToArray());
        Assert.Equal(35, loss.Foreground);
        var gtIdx = Case.GetProperty("target_gt").EnumerateArray().Select(v => v.GetInt32()).ToArray();
        for (int i = 0; i < fg.Length; i++)
            if (fg[i]) Assert.Equal(gtIdx[i], assigned[i / a].TargetGt[i % a]);
        TestUtil.AssertClose(Doubles(Case.GetProperty("target_scores")), assigned.SelectMany(x => x.TargetScores).ToArray(), 1e-9, 1e-12, "target scores");
        var boxes = Doubles(Case.GetProperty("target_boxes"));
        var ours = assigned.SelectMany(x => x.TargetBoxes).ToArray();
        for (int i = 0; i < fg.Length; i++)
            if (fg[i]) TestUtil.AssertClose(boxes[(4 * i)..(4 * i + 4)], ours[(4 * i)..(4 * i + 4)], 1e-12, 1e-12, $"target box of cell {i}");

        var expected = Case.GetProperty("loss");
        Assert.Equal(expected.GetProperty("box").GetDouble(), loss.Box, 1e-9);
        Assert.Equal(expected.GetProperty("cls").GetDouble(), loss.Cls, 1e-9);
        Assert.Equal(expected.GetProperty("dfl").GetDouble(), loss.Dfl, 1e-9);
        Assert.Equal(expected.GetProperty("total").GetDouble(), loss.Total.Item(), 1e-8);

        loss.Total.Backward();
        var grads = Case.GetProperty("grads").EnumerateArray().Select(Doubles).ToArray();
        for (int k = 0; k < outputs.Length; k++)
            TestUtil.AssertClose(grads[k], outputs[k].Grad!.ToDoubleArray(), 1e-7, 1e-9, $"gradient of output {k}");
    }

    [Fact]
    public void InF32TheLossIsPyTorchsToSinglePrecision()
    {
        var (outputs, gts) = Inputs(DType.F32);
        var loss = YoloLoss.Compute(outputs, gts, 3, 16, 64, 64);
        Assert.Equal(Case.GetProperty("loss").GetProperty("total").GetDouble(), loss.Total.Item(), 517.2 * 1e-5);
    }

    [Fact]
    public void CompleteIouMatchesTheScalarFormulaAndItsGradientMatchesFiniteDifferences()
    {
        double[] p = [1.0, 2.0, 5.0, 7.5, 3.0, 1.0, 4.0, 6.0];
        double[] t = [1.5, 1.0, 6.0, 7.0, 0.5, 2.0, 5.0, 4.0];
        var pt = Tensor.FromArray(p, [2, 4]);
        pt.RequiresGrad = true;
        var ciou = YoloLoss.CompleteIou(pt, Tensor.FromArray(t, [2, 4]));
        var values = ciou.ToDoubleArray();
        for (int i = 0; i < 2; i++)
            Assert.Equal(Ciou.Value(p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3], t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]), values[i], 12);
        ciou.Sum().Backward();
        var grad = pt.Grad!.ToDoubleArray();
        // Ultralytics holds alpha constant in the backward pass, so the finite difference does too: at boxes q the
        // function is CIoU(q) with alpha(q) replaced by alpha(p), i.e. CIoU(q) + v(q) (alpha(q) - alpha(p)).
        double Loss(double[] q)
        {
            double sum = 0;
            for (int i = 0; i < 2; i++)
            {
                var (v, alpha) = AtanTerm(q, t, i);
                sum += Ciou.Value(q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3], t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]) + v * (alpha - AtanTerm(p, t, i).Alpha);
            }
            return sum;
        }
        for (int j = 0; j < 8; j++)
        {
            var (up, down) = ((double[])p.Clone(), (double[])p.Clone());
            up[j] += 1e-6;
            down[j] -= 1e-6;
            Assert.Equal((Loss(up) - Loss(down)) / 2e-6, grad[j], 6);
        }
    }

    /// <summary>v and alpha of box pair i (the CIoU's aspect term) at boxes q, t.</summary>
    private static (double V, double Alpha) AtanTerm(double[] q, double[] t, int i)
    {
        double w1 = q[4 * i + 2] - q[4 * i], h1 = q[4 * i + 3] - q[4 * i + 1] + Ciou.Eps;
        double w2 = t[4 * i + 2] - t[4 * i], h2 = t[4 * i + 3] - t[4 * i + 1] + Ciou.Eps;
        double v = 4 / (Math.PI * Math.PI) * Math.Pow(Math.Atan(w2 / h2) - Math.Atan(w1 / h1), 2);
        double ix = Math.Max(Math.Min(q[4 * i + 2], t[4 * i + 2]) - Math.Max(q[4 * i], t[4 * i]), 0);
        double iy = Math.Max(Math.Min(q[4 * i + 3], t[4 * i + 3]) - Math.Max(q[4 * i + 1], t[4 * i + 1]), 0);
        double iou = ix * iy / (w1 * h1 + w2 * h2 - ix * iy + Ciou.Eps);
        return (v, v / (v - iou + 1 + Ciou.Eps));
    }
}
