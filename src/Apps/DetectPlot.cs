using ManagedTensor.Models.Detection.Yolo;

namespace ManagedTensor.Apps;

/// <summary>A detector run's curves as a PNG (ScottPlot): the mean box, class and DFL losses of each epoch and the val mAPs.</summary>
public static class DetectPlot
{
    public static void Save(IReadOnlyList<YoloEpochLog> history, string path, string title)
    {
        var plot = new ScottPlot.Plot();
        double[] xs = history.Select(h => (double)h.Epoch).ToArray();
        void Line(string name, Func<YoloEpochLog, double> y) => plot.Add.ScatterLine(xs, history.Select(y).ToArray()).LegendText = name;
        Line("box loss", h => h.Box);
        Line("cls loss", h => h.Cls);
        Line("dfl loss", h => h.Dfl);
        Line("val mAP@0.5", h => h.Map50);
        Line("val mAP@0.5:0.95", h => h.Map50To95);
        plot.Title(title);
        plot.XLabel("epoch");
        plot.YLabel("loss (per part, before gains) / mAP");
        plot.ShowLegend(ScottPlot.Edge.Right);
        string tmp = Models.IO.AtomicFile.TempPath(path);
        plot.SavePng(tmp, 1000, 540);
        File.Move(tmp, path, overwrite: true);
    }
}
