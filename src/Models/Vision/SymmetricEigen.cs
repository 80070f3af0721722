namespace ManagedTensor.Models.Vision;

/// <summary>
/// Eigenvalues and eigenvectors of a real symmetric matrix by cyclic Jacobi rotations (Golub and Van Loan 8.5):
/// each rotation in the (p, q) plane zeroes A[p, q]; sweeps repeat until the off-diagonal mass is negligible.
/// Slow (O(n^3) per sweep) but simple and accurate to rounding for the 128 x 128 covariances FID needs, and its
/// eigenvectors are orthonormal to rounding, which a matrix square root relies on.
/// </summary>
public static class SymmetricEigen
{
    /// <summary>(values, vectors) with A = V diag(values) V^T; column k of V is the k-th eigenvector.</summary>
    public static (double[] Values, double[,] Vectors) Decompose(double[,] matrix, int maxSweeps = 100)
    {
        int n = matrix.GetLength(0);
        if (matrix.GetLength(1) != n) throw new ArgumentException($"SymmetricEigen: matrix is {n} x {matrix.GetLength(1)}, must be square");
        var a = (double[,])matrix.Clone();
        var v = new double[n, n];
        for (int i = 0; i < n; i++) v[i, i] = 1;
        double scale = 0;
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) scale += a[i, j] * a[i, j];
        for (int sweep = 0; sweep < maxSweeps; sweep++)
        {
            double off = 0;
            for (int p = 0; p < n; p++) for (int q = p + 1; q < n; q++) off += a[p, q] * a[p, q];
            if (off <= 1e-30 * Math.Max(scale, 1e-300)) break;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++)
                {
                    if (a[p, q] == 0) continue;
                    // The rotation angle: tan(2 theta) = 2 a_pq / (a_qq - a_pp); t = tan(theta), the smaller root.
                    double theta = (a[q, q] - a[p, p]) / (2 * a[p, q]);
                    double t = Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < n; k++)   // A = A J (columns p, q)
                    {
                        double akp = a[k, p], akq = a[k, q];
                        a[k, p] = c * akp - s * akq;
                        a[k, q] = s * akp + c * akq;
                    }
                    for (int k = 0; k < n; k++)   // A = J^T A (rows p, q)
                    {
                        double apk = a[p, k], aqk = a[q, k];
                        a[p, k] = c * apk - s * aqk;
                        a[q, k] = s * apk + c * aqk;
                    }
                    for (int k = 0; k < n; k++)   // V = V J
                    {
                        double vkp = v[k, p], vkq = v[k, q];
                        v[k, p] = c * vkp - s * vkq;
                        v[k, q] = s * vkp + c * vkq;
                    }
                }
        }
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = a[i, i];
        return (values, v);
    }
}
