using ManagedTensor.Models.Training;

namespace ManagedTensor.Apps;

/// <summary>The loss curve of a run as a PNG (ScottPlot): per-step training loss, and the evaluated train/val losses.</summary>
public static class LossPlot
{
    public static void Save(IReadOnlyList<LossPoint> history, string path, string title)
    {
        var plot = new ScottPlot.Plot();
        var steps = history.Where(p => p.Val is null).ToList();
        var evals = history.Where(p => p.Val is not null).ToList();
        if (steps.Count > 0)
        {
            var s = plot.Add.ScatterLine(steps.Select(p => (double)p.Iter).ToArray(), steps.Select(p => p.Train).ToArray());
            s.LegendText = "train (batch)";
            s.LineWidth = 1;
        }
        if (evals.Count > 0)
        {
            var xs = evals.Select(p => (double)p.Iter).ToArray();
            var t = plot.Add.Scatter(xs, evals.Select(p => p.Train).ToArray());
            t.LegendText = "train (eval)";
            var v = plot.Add.Scatter(xs, evals.Select(p => p.Val!.Value).ToArray());
            v.LegendText = "val (eval)";
        }
        plot.Title(title);
        plot.XLabel("iteration");
        plot.YLabel("cross-entropy loss");
        plot.ShowLegend();
        // ScottPlot writes straight to the path; write beside it and rename, so a crash leaves no torn PNG.
        string tmp = path + ".tmp.png";
        plot.SavePng(tmp, 900, 540);
        File.Move(tmp, path, overwrite: true);
    }
}
