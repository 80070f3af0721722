using ManagedTensor.Models.Training;

namespace ManagedTensor.Apps;

/// <summary>
/// The loss curve of a run as a PNG (ScottPlot): the training loss of each logged step as a line, and each
/// evaluation's train and val losses as points. Evaluations are points, not a line: they are far apart (every 250
/// steps by default), and a line from step 0's untrained loss to the next evaluation is a long diagonal that no
/// measurement followed. The legend sits outside the axes, so it never hides the end of the curves.
/// </summary>
public static class LossPlot
{
    public static void Save(IReadOnlyList<LossPoint> history, string path, string title, string yLabel = "cross-entropy loss")
    {
        var plot = Build(history, title, yLabel);
        // ScottPlot writes straight to the path; write beside it and rename, so a crash leaves no torn PNG.
        string tmp = Models.IO.AtomicFile.TempPath(path);
        plot.SavePng(tmp, 1000, 540);
        File.Move(tmp, path, overwrite: true);
    }

    public static ScottPlot.Plot Build(IReadOnlyList<LossPoint> history, string title, string yLabel = "cross-entropy loss")
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
            var t = plot.Add.ScatterPoints(xs, evals.Select(p => p.Train).ToArray());
            t.LegendText = "train (eval)";
            t.MarkerSize = 7;
            var v = plot.Add.ScatterPoints(xs, evals.Select(p => p.Val!.Value).ToArray());
            v.LegendText = "val (eval)";
            v.MarkerSize = 7;
        }
        plot.Title(title);
        plot.XLabel("iteration");
        plot.YLabel(yLabel);
        plot.ShowLegend(ScottPlot.Edge.Right);
        return plot;
    }
}
