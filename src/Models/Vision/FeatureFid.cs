namespace ManagedTensor.Models.Vision;

/// <summary>
/// Fréchet distance between two sets of feature vectors, each summarized by a Gaussian (mean mu, covariance S,
/// unbiased): FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) (Heusel et al. 2017).
/// The features here are the project's own Fashion-MNIST classifier's penultimate layer (<see cref="FashionClassifier.Features"/>,
/// 128 values), NOT Inception-v3's pool features: the numbers are comparable between runs of this project, not with
/// published FIDs.
/// Tr((S1 S2)^{1/2}) without a general matrix square root: with R = S1^{1/2} (from the eigendecomposition of the
/// symmetric S1: V diag(sqrt(max(l, 0))) V^T), S1 S2 is similar to M = R S2 R, which is symmetric positive
/// semi-definite, so Tr((S1 S2)^{1/2}) = Tr(M^{1/2}) = sum_k sqrt(max(eig_k(M), 0)). Two symmetric eigendecompositions
/// (<see cref="SymmetricEigen"/>), no complex arithmetic; tiny negative eigenvalues from rounding are clamped to 0.
/// </summary>
public static class FeatureFid
{
    public sealed record Gaussian(double[] Mean, double[,] Cov, int Count);

    /// <summary>Mean and unbiased covariance of <paramref name="features"/> (N rows of d values, N >= 2).</summary>
    public static Gaussian Fit(double[] features, int n, int d)
    {
        if (n < 2 || features.Length != n * d) throw new ArgumentException($"FID: need at least 2 feature vectors of {d} values, got {features.Length} values for {n}");
        var mean = new double[d];
        for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) mean[j] += features[i * d + j];
        for (int j = 0; j < d; j++) mean[j] /= n;
        var cov = new double[d, d];
        var row = new double[d];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < d; j++) row[j] = features[i * d + j] - mean[j];
            for (int j = 0; j < d; j++)
            {
                double rj = row[j];
                if (rj == 0) continue;
                for (int k = j; k < d; k++) cov[j, k] += rj * row[k];
            }
        }
        for (int j = 0; j < d; j++)
            for (int k = j; k < d; k++) cov[k, j] = cov[j, k] /= n - 1;
        return new Gaussian(mean, cov, n);
    }

    public static double Distance(Gaussian a, Gaussian b)
    {
        int d = a.Mean.Length;
        if (b.Mean.Length != d) throw new ArgumentException($"FID: features of {d} and {b.Mean.Length} values");
        double meanTerm = 0, trace = 0;
        for (int j = 0; j < d; j++)
        {
            meanTerm += (a.Mean[j] - b.Mean[j]) * (a.Mean[j] - b.Mean[j]);
            trace += a.Cov[j, j] + b.Cov[j, j];
        }
        var r = SqrtPsd(a.Cov);
        var m = Multiply(Multiply(r, b.Cov), r);
        Symmetrize(m);
        var (eig, _) = SymmetricEigen.Decompose(m);
        double trSqrt = eig.Sum(l => Math.Sqrt(Math.Max(l, 0)));
        return meanTerm + trace - 2 * trSqrt;
    }

    /// <summary>S^{1/2} = V diag(sqrt(max(l, 0))) V^T for a symmetric positive semi-definite S.</summary>
    public static double[,] SqrtPsd(double[,] s)
    {
        int d = s.GetLength(0);
        var (l, v) = SymmetricEigen.Decompose(s);
        var r = new double[d, d];
        for (int k = 0; k < d; k++)
        {
            double sq = Math.Sqrt(Math.Max(l[k], 0));
            if (sq == 0) continue;
            for (int i = 0; i < d; i++)
            {
                double vi = v[i, k] * sq;
                for (int j = 0; j < d; j++) r[i, j] += vi * v[j, k];
            }
        }
        return r;
    }

    private static double[,] Multiply(double[,] a, double[,] b)
    {
        int n = a.GetLength(0), m = b.GetLength(1), k = a.GetLength(1);
        var c = new double[n, m];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < k; p++)
            {
                double aip = a[i, p];
                if (aip == 0) continue;
                for (int j = 0; j < m; j++) c[i, j] += aip * b[p, j];
            }
        return c;
    }

    private static void Symmetrize(double[,] m)
    {
        int n = m.GetLength(0);
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) m[i, j] = m[j, i] = (m[i, j] + m[j, i]) / 2;
    }
}
