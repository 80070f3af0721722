using ManagedTensor.Models.Detection.Yolo;
using Xunit;

namespace ManagedTensor.Tests.Models;

/// <summary>
/// The speed workload of issue 17 (YoloSpeed, shared by `ManagedTensor.Bench yolo` and `mt bench yolo`) at a small size
/// on the CPU: a training step marks its four phases in order and moves the weights; a forward marks nothing and has
/// no loss; bad sizes and modes are refused by name.
/// </summary>
public class YoloSpeedTests
{
    [Fact]
    public void A_training_step_marks_each_phase_in_order_and_updates_the_weights()
    {
        var run = new YoloSpeed("train", "yolov8n", 64, -1, Device.Cpu);
        Assert.Equal(2, run.Batch); // the bench's training batch
        var weight = run.Model.NamedParameters().First(p => p.Name == "model.0.conv.weight").Tensor;
        double[] before = weight.ToDoubleArray();
        var marks = new List<int>();
        double ms = run.Iteration(marks.Add);
        Assert.Equal(new[] { 0, 1, 2, 3 }, marks);
        Assert.True(ms > 0);
        Assert.True(double.IsFinite(run.Loss) && run.Loss > 0, $"loss {run.Loss}");
        Assert.NotEqual(before, weight.ToDoubleArray()); // AdamW stepped
        Assert.Null(run.DevicePeakBytes);                // the CPU has no device allocator
    }

    [Fact]
    public void A_forward_marks_nothing_and_has_no_loss()
    {
        var run = new YoloSpeed("forward", "yolov8n", 64, -1, Device.Cpu);
        Assert.Equal(1, run.Batch);
        var marks = new List<int>();
        Assert.True(run.Iteration(marks.Add) > 0);
        Assert.Empty(marks);
        Assert.True(double.IsNaN(run.Loss));
    }

    [Theory]
    [InlineData("train", 100, 2, "--imgsz 100")]
    [InlineData("eval", 64, 1, "--mode eval")]
    [InlineData("forward", 64, 0, "--batch 0")]
    public void Bad_arguments_are_named(string mode, int size, int batch, string named)
    {
        var e = Assert.Throws<ArgumentException>(() => new YoloSpeed(mode, "yolov8n", size, batch, Device.Cpu));
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void The_median_of_an_even_count_is_the_mean_of_the_middle_two()
    {
        Assert.Equal(3.0, YoloSpeed.Median([5, 1, 3]));
        Assert.Equal(2.5, YoloSpeed.Median([4, 1, 3, 2]));
    }
}
