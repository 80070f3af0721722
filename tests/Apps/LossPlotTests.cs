using ManagedTensor.Apps;
using ManagedTensor.Models.Training;
using Xunit;

namespace ManagedTensor.Tests.Apps;

/// <summary>loss.png: the legend stands beside the axes (inside, it hid the last tenth of the curves), and evaluations are points, not a line drawn from step 0.</summary>
public sealed class LossPlotTests
{
    private static readonly List<LossPoint> History =
    [
        new(0, 4.2, 4.2), .. Enumerable.Range(0, 100).Select(i => new LossPoint(i, 4.2 - 2.0 * i / 100)), new(50, 3.1, 3.2), new(100, 2.2, 2.3),
    ];

    [Fact]
    public void The_legend_is_outside_the_axes()
    {
        var plot = LossPlot.Build(History, "t");
        Assert.False(plot.Legend.IsVisible); // not drawn over the data
        Assert.Contains(plot.Axes.GetPanels(), p => p.GetType().Name.Contains("Legend", StringComparison.Ordinal));
    }

    [Fact]
    public void Evaluations_are_points_not_joined_by_lines()
    {
        var plot = LossPlot.Build(History, "t");
        var scatters = plot.GetPlottables<ScottPlot.Plottables.Scatter>().ToList();
        Assert.Equal(3, scatters.Count);
        foreach (var s in scatters.Where(s => s.LegendText.Contains("eval", StringComparison.Ordinal))) Assert.Equal(0, s.LineWidth);
        Assert.Equal(1, scatters.Single(s => s.LegendText == "train (batch)").LineWidth);
    }

    [Fact]
    public void Saves_a_png_atomically()
    {
        string dir = Directory.CreateTempSubdirectory("mt-plot-").FullName;
        try
        {
            string png = Path.Combine(dir, "loss.png");
            LossPlot.Save(History, png, "t");
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png)[..4]);
            Assert.Equal([png], Directory.GetFiles(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
