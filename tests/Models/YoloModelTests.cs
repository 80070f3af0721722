using ManagedTensor.Models.Detection.Yolo;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>YOLOv8's architecture: sizes as Ultralytics', output shapes, DFL decoding and batch-norm fusion.</summary>
public class YoloModelTests
{
    [Theory]
    // Ultralytics' summaries for 80 classes: yolov8n 3,157,200 parameters, yolov8s 11,166,560; less the 16 of the
    // frozen DFL conv (a fixed 0..15 projection here, not a parameter).
    [InlineData("yolov8n", 3_157_184)]
    [InlineData("yolov8s", 11_166_544)]
    public void ParameterCountsAreUltralytics(string name, long expected)
    {
        var model = new YoloV8(YoloConfig.For(name, 80), new Generator(0), Device.Cpu);
        Assert.Equal(expected, model.ParameterCount());
        var names = model.StateDict().Keys.ToHashSet();
        Assert.Contains("model.2.m.0.cv1.conv.weight", names);   // Ultralytics' own names
        Assert.Contains("model.22.cv3.2.2.bias", names);
        Assert.Contains("model.9.cv2.bn.running_var", names);
    }

    [Fact]
    public void OutputsHaveOneRowPerCellAtStrides8To32AndDecodeToBoxes()
    {
        var model = new YoloV8(YoloConfig.For("yolov8n", 3), new Generator(1), Device.Cpu);
        var x = Tensor.Rand([2, 3, 64, 96], new Generator(2));
        var outs = model.Forward(x);
        Assert.Equal(new[] { 2, 67, 8, 12 }, outs[0].Shape);
        Assert.Equal(new[] { 2, 67, 4, 6 }, outs[1].Shape);
        Assert.Equal(new[] { 2, 67, 2, 3 }, outs[2].Shape);
        var pred = model.Detect.Decode(outs, 64, 96);
        Assert.Equal(new[] { 2, 7, 96 + 24 + 6 }, pred.Shape);
        Assert.Throws<ArgumentException>(() => model.Forward(Tensor.Rand([1, 3, 48, 64], new Generator(2))));
    }

    [Fact]
    public void DflDecodesTheExpectedDistanceFromTheCellCentre()
    {
        // One 32 x 32 input: 16 + 4 + 1 cells. Cell 5 (x 1, y 1 at stride 8: centre 12, 12) gets distances
        // l 2, t 3 (one-hot bins), r and b 4.5 (half in bin 4, half in bin 5).
        int r = 16, nc = 2;
        var raw = new float[(4 * r + nc) * 21];
        for (int k = 0; k < 4 * r + nc; k++)
            for (int a = 0; a < 21; a++) raw[k * 21 + a] = -30; // softmax mass ~0 everywhere ...
        void Set(int side, int bin, float v) => raw[(side * r + bin) * 21 + 5] = v;
        Set(0, 2, 30); Set(1, 3, 30); Set(2, 4, 30); Set(2, 5, 30); Set(3, 4, 30); Set(3, 5, 30);
        raw[(4 * r + 1) * 21 + 5] = 0; // class 1 logit 0 -> probability 0.5
        var flat = Tensor.FromArray(raw, [1, 4 * r + nc, 21]);
        var outs = new[] { flat.Narrow(2, 0, 16).Reshape(1, 4 * r + nc, 4, 4), flat.Narrow(2, 16, 4).Reshape(1, 4 * r + nc, 2, 2), flat.Narrow(2, 20, 1).Reshape(1, 4 * r + nc, 1, 1) };
        var head = new DetectHead(nc, r, [16, 32, 64], new Generator(0), Device.Cpu);
        var p = head.Decode(outs, 32, 32).ToDoubleArray(); // (1, 6, 21)
        double At(int row) => p[row * 21 + 5];
        // x0 = (1.5 - 2) * 8 = -4, x1 = (1.5 + 4.5) * 8 = 48 -> cx 22, w 52; y0 = (1.5 - 3) * 8 = -12, y1 = 48 -> cy 18, h 60
        Assert.Equal(22, At(0), 3);
        Assert.Equal(18, At(1), 3);
        Assert.Equal(52, At(2), 3);
        Assert.Equal(60, At(3), 3);
        Assert.Equal(0.5, At(5), 6);
    }

    [Fact]
    public void FusedBatchNormGivesTheSameOutputsAsConvThenBatchNorm()
    {
        var model = new YoloV8(YoloConfig.For("yolov8n", 2), new Generator(3), Device.Cpu);
        // Statistics a few training steps would leave: move every batch norm away from the identity.
        var g = new Generator(4);
        using (GradMode.NoGrad())
            foreach (var c in model.ConvBlocks())
            {
                int ch = c.Bn.Channels;
                c.Bn.Weight.CopyFrom_(Tensor.Rand([ch], g, 0.5, 1.5));
                c.Bn.Bias.CopyFrom_(Tensor.Rand([ch], g, -0.3, 0.3));
                c.Bn.RunningMean.CopyFrom_(Tensor.Rand([ch], g, -0.2, 0.2));
                c.Bn.RunningVar.CopyFrom_(Tensor.Rand([ch], g, 0.5, 2));
            }
        var x = Tensor.Rand([1, 3, 64, 64], new Generator(5));
        model.Eval();
        var plain = model.Predict(x).ToDoubleArray();
        model.Fuse();
        Assert.All(model.ConvBlocks(), c => Assert.True(c.IsFused));
        var fused = model.Predict(x).ToDoubleArray();
        TestUtil.AssertClose(plain, fused, rtol: 1e-4, atol: 1e-4, what: "fused vs conv + batch norm");
        model.TrainMode();
        Assert.DoesNotContain(model.ConvBlocks(), c => c.IsFused);
    }
}
