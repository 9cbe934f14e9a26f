/* emit_kernels.c — the fixed part of every generated file: the real type,
 * the dense kernels and the activations with their derivatives.
 *
 * The kernels are plain C written so that clang vectorizes them: small
 * fixed-size accumulator arrays that stay in registers (register blocking),
 * unit-stride inner loops. Every call site passes compile-time sizes except
 * the batch, and the kernels are static, so clang specializes them. */
#include "emit_internal.h"

#include <string.h>

static const char kernels[] =
    "/* ---- kernels ------------------------------------------------------------ */\n"
    "\n"
    "/* Threads (OpenMP, when compiled with -fopenmp): a kernel splits its OUTPUT\n"
    " * among the threads, never a sum, and every output element is computed by\n"
    " * the same operations in the same order as on one thread, so results are\n"
    " * bitwise the same for any number of threads. Below PAR_WORK multiply-adds a\n"
    " * call stays on the calling thread without entering OpenMP at all. */\n"
    "#ifdef _OPENMP\n"
    "#include <omp.h>\n"
    "#endif\n"
    "enum { MR = 4,    /* rows of C per micro-kernel call */\n"
    "       NB = %d,   /* columns of C kept in registers: two vectors */\n"
    "       KC = 256,  /* rows of B packed at a time (NB x KC fits in L1) */\n"
    "       PAR_WORK = 1 << 17 };\n"
    "\n"
    "/* C[MR x NB] += A[MR x kc] P[kc x NB], P a packed panel of B: the accumulators\n"
    " * stay in registers while p runs. A(i, p) = a[i * ars + p * acs]. */\n"
    "static void mm_micro(long kc, const real *restrict a, long ars, long acs,\n"
    "                     const real *restrict panel, real *restrict c, long ldc)\n"
    "{\n"
    "    real acc[MR][NB];\n"
    "    for (int r = 0; r < MR; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            acc[r][s] = c[r * ldc + s];\n"
    "    for (long p = 0; p < kc; p++)\n"
    "        for (int r = 0; r < MR; r++) {\n"
    "            real ar = a[r * ars + p * acs];\n"
    "            for (int s = 0; s < NB; s++)\n"
    "                acc[r][s] += ar * panel[p * NB + s];\n"
    "        }\n"
    "    for (int r = 0; r < MR; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            c[r * ldc + s] = acc[r][s];\n"
    "}\n"
    "\n"
    "/* C[m x n] += A[m x k] B[k x n], with A(i, p) = a[i * ars + p * acs] and\n"
    " * B(p, j) = b[p * bps + j * bjs]: any of A, B may be read transposed. Panels\n"
    " * of B (KC x NB) are copied to a contiguous buffer on the stack first, so\n"
    " * the micro-kernel reads them with unit stride whatever B's layout (a slice\n"
    " * of a shared weight, or W^T for the dual machine). */\n"
    "static void mm_gen_seq(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                       const real *restrict b, long bps, long bjs, real *restrict c, long ldc)\n"
    "{\n"
    "    real panel[KC * NB];\n"
    "    long j = 0;\n"
    "    for (; j + NB <= n; j += NB)\n"
    "        for (long p0 = 0; p0 < k; p0 += KC) {\n"
    "            long kc = k - p0 < KC ? k - p0 : KC;\n"
    "            for (long p = 0; p < kc; p++)\n"
    "                for (int s = 0; s < NB; s++)\n"
    "                    panel[p * NB + s] = b[(p0 + p) * bps + (j + s) * bjs];\n"
    "            long i = 0;\n"
    "            for (; i + MR <= m; i += MR)\n"
    "                mm_micro(kc, a + i * ars + p0 * acs, ars, acs, panel, c + i * ldc + j, ldc);\n"
    "            for (; i < m; i++)\n"
    "                for (long p = 0; p < kc; p++) {\n"
    "                    real ar = a[i * ars + (p0 + p) * acs];\n"
    "                    for (int s = 0; s < NB; s++)\n"
    "                        c[i * ldc + j + s] += ar * panel[p * NB + s];\n"
    "                }\n"
    "        }\n"
    "    if (j < n) /* the last columns, fewer than NB */\n"
    "        for (long i = 0; i < m; i++)\n"
    "            for (long p = 0; p < k; p++) {\n"
    "                real ar = a[i * ars + p * acs];\n"
    "                for (long s = j; s < n; s++)\n"
    "                    c[i * ldc + s] += ar * b[p * bps + s * bjs];\n"
    "            }\n"
    "}\n"
    "\n"
    "/* The same, its rows split among the threads: each thread takes a contiguous\n"
    " * range cut at a multiple of MR, so every row goes through the same path\n"
    " * (micro-kernel or remainder) as on one thread. Rows are the batch in the\n"
    " * forward and dual products, the input features in dW = z^T ybar (each\n"
    " * thread summing the whole batch for its rows of dW). */\n"
    "static void mm_gen(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                   const real *restrict b, long bps, long bjs, real *restrict c, long ldc)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if (m >= 2 * MR && (double)m * n * k >= PAR_WORK && omp_get_max_threads() > 1) {\n"
    "#pragma omp parallel\n"
    "        {\n"
    "            long blocks = (m + MR - 1) / MR, t = omp_get_thread_num(), T = omp_get_num_threads();\n"
    "            long lo = blocks * t / T * MR, hi = blocks * (t + 1) / T * MR;\n"
    "            if (hi > m)\n"
    "                hi = m;\n"
    "            if (lo < hi)\n"
    "                mm_gen_seq(hi - lo, n, k, a + lo * ars, ars, acs, b, bps, bjs, c + lo * ldc, ldc);\n"
    "        }\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    mm_gen_seq(m, n, k, a, ars, acs, b, bps, bjs, c, ldc);\n"
    "}\n"
    "\n"
    "/* C[m x n] += A[m x k] B[k x n] for the loop nests of grid arrows, where the\n"
    " * contraction index p and the column index j each stand for two loop\n"
    " * indices, p = (p1, p0) with p0 < kn and j = (j1, j0) with j0 < nn (for\n"
    " * instance j = (sample, position)):\n"
    " *   A(i, p) = a[i * ai + p1 * ap1 + p0 * ap0]\n"
    " *   B(p, j) = b[p1 * bp1 + p0 * bp0 + j1 * bj1 + j0 * bj0]\n"
    " *   C(i, j) = c[i * ci + j1 * cj1 + j0 * cj0]\n"
    " * Panels of A (MR x KC) and B (KC x NB) are gathered to work, zero past the\n"
    " * edges, so every product runs through mm_micro; its MR x NB result is then\n"
    " * added to C. work holds kk (NB + MR) + MR NB scalars, kk = min(k, KC): the\n"
    " * caller's scratch, so that no frame holds a panel (a small stack). When\n"
    " * rows j1 hold at least NB / 2 columns, a block of columns stays inside one\n"
    " * row, so that B and C are read with the steps bj0 and cj0 (unit-stride\n"
    " * copies when 1); shorter rows are packed across. */\n"
    "static void mm_grid(long m, long n, long k, long kn, long nn,\n"
    "                    const real *restrict a, long ai, long ap1, long ap0,\n"
    "                    const real *restrict b, long bp1, long bp0, long bj1, long bj0,\n"
    "                    real *restrict c, long ci, long cj1, long cj0, real *restrict work)\n"
    "{\n"
    "    const long kk = k < KC ? k : KC;\n"
    "    real *restrict bpanel = work, *restrict apanel = work + kk * NB, *restrict tile = apanel + kk * MR;\n"
    "    long boff[NB], coff[NB];\n"
    "    const int rows = 2 * nn >= NB;\n"
    "    for (long j = 0; j < n;) {\n"
    "        long nb = n - j < NB ? n - j : NB;\n"
    "        if (rows && nn - j %% nn < nb)\n"
    "            nb = nn - j %% nn; /* the block ends with its row */\n"
    "        for (long s = 0; s < nb; s++) { /* where column j + s lives in B and C */\n"
    "            long j1 = (j + s) / nn, j0 = (j + s) %% nn;\n"
    "            boff[s] = j1 * bj1 + j0 * bj0;\n"
    "            coff[s] = j1 * cj1 + j0 * cj0;\n"
    "        }\n"
    "        for (long p0 = 0; p0 < k; p0 += KC) {\n"
    "            long kc = k - p0 < KC ? k - p0 : KC;\n"
    "            /* row p0 + p of B lives at b + q1 * bp1 + q0 * bp0, (q1, q0) = p0 + p */\n"
    "            for (long p = 0, q1 = p0 / kn, q0 = p0 %% kn; p < kc; p++) {\n"
    "                real *restrict row = bpanel + p * NB;\n"
    "                const long poff = q1 * bp1 + q0 * bp0;\n"
    "                const real *bp = b + poff + boff[0];\n"
    "                if (rows && bj0 == 1)\n"
    "                    for (long s = 0; s < nb; s++)\n"
    "                        row[s] = bp[s];\n"
    "                else if (rows)\n"
    "                    for (long s = 0; s < nb; s++)\n"
    "                        row[s] = bp[s * bj0];\n"
    "                else\n"
    "                    for (long s = 0; s < nb; s++)\n"
    "                        row[s] = b[poff + boff[s]];\n"
    "                for (long s = nb; s < NB; s++)\n"
    "                    row[s] = 0;\n"
    "                if (++q0 == kn)\n"
    "                    q0 = 0, q1++;\n"
    "            }\n"
    "            for (long i = 0; i < m; i += MR) {\n"
    "                long mr = m - i < MR ? m - i : MR;\n"
    "                for (long p = 0, q1 = p0 / kn, q0 = p0 %% kn; p < kc; p++) {\n"
    "                    const long aoff = q1 * ap1 + q0 * ap0;\n"
    "                    for (long r = 0; r < MR; r++)\n"
    "                        apanel[p * MR + r] = r < mr ? a[(i + r) * ai + aoff] : 0;\n"
    "                    if (++q0 == kn)\n"
    "                        q0 = 0, q1++;\n"
    "                }\n"
    "                for (long q = 0; q < MR * NB; q++)\n"
    "                    tile[q] = 0;\n"
    "                mm_micro(kc, apanel, 1, MR, bpanel, tile, NB);\n"
    "                for (long r = 0; r < mr; r++) {\n"
    "                    real *restrict cr = c + (i + r) * ci;\n"
    "                    if (rows && cj0 == 1)\n"
    "                        for (long s = 0; s < nb; s++)\n"
    "                            cr[coff[0] + s] += tile[r * NB + s];\n"
    "                    else\n"
    "                        for (long s = 0; s < nb; s++)\n"
    "                            cr[coff[s]] += tile[r * NB + s];\n"
    "                }\n"
    "            }\n"
    "        }\n"
    "        j += nb;\n"
    "    }\n"
    "}\n"
    "\n"
    "/* C[m x n] = sum over taps t and channels q of A(i, (t, q)) B((t, q), j), set\n"
    " * (not added): a convolution whose patch matrix is read in place from a\n"
    " * zero-padded input, row (t, q) the window of channel q at tap t:\n"
    " *   A(i, (t, q)) = a[(t * ch + q) * m + i]   packed weights, m a multiple of MR\n"
    " *   B((t, q), j) = b[q * bcs + tap_at[t] + j] read up to the next multiple of NB past n\n"
    " *   C(i, j) = c[i * ldc + j]                  ldc a multiple of NB */\n"
    "static void taps_micro(long taps, long ch, const real *restrict a, long m, long ats,\n"
    "                       const real *restrict b, const long *restrict tap_at, long bcs,\n"
    "                       real *restrict c, long ldc, int add)\n"
    "{\n"
    "    real acc[MR][NB];\n"
    "    for (int r = 0; r < MR; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            acc[r][s] = add ? c[r * ldc + s] : 0;\n"
    "    for (long t = 0; t < taps; t++) {\n"
    "        const real *restrict bt = b + tap_at[t];\n"
    "        const real *restrict at = a + t * ats;\n"
    "        for (long q = 0; q < ch; q++)\n"
    "            for (int r = 0; r < MR; r++) {\n"
    "                real ar = at[q * m + r];\n"
    "                for (int s = 0; s < NB; s++)\n"
    "                    acc[r][s] += ar * bt[q * bcs + s];\n"
    "            }\n"
    "    }\n"
    "    for (int r = 0; r < MR; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            c[r * ldc + s] = acc[r][s];\n"
    "}\n"
    "\n"
    "/* One block of NB columns of mm_taps, the channels in chunks of taps x chunk\n"
    " * <= KC rows: the rows of B the block reads stay in L1 while every row\n"
    " * block of A passes. */\n"
    "static void taps_cols(long m, long taps, long ch, const real *restrict a, const real *restrict b,\n"
    "                      const long *restrict tap_at, long bcs, real *restrict c, long ldc)\n"
    "{\n"
    "    long chunk = KC / taps > 0 ? KC / taps : 1;\n"
    "    for (long q0 = 0; q0 < ch; q0 += chunk) {\n"
    "        long qc = ch - q0 < chunk ? ch - q0 : chunk;\n"
    "        for (long i = 0; i < m; i += MR)\n"
    "            taps_micro(taps, qc, a + q0 * m + i, m, ch * m, b + q0 * bcs, tap_at, bcs,\n"
    "                       c + i * ldc, ldc, q0 > 0);\n"
    "    }\n"
    "}\n"
    "\n"
    "static void mm_taps(long m, long n, long taps, long ch, const real *restrict a,\n"
    "                    const real *restrict b, const long *restrict tap_at, long bcs,\n"
    "                    real *restrict c, long ldc)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if ((double)m * n * taps * ch >= PAR_WORK && n > NB && omp_get_max_threads() > 1) {\n"
    "        /* blocks of NB columns (samples and positions) among the threads */\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long j = 0; j < n; j += NB)\n"
    "            taps_cols(m, taps, ch, a, b + j, tap_at, bcs, c + j, ldc);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long j = 0; j < n; j += NB)\n"
    "        taps_cols(m, taps, ch, a, b + j, tap_at, bcs, c + j, ldc);\n"
    "}\n"
    "\n"
    "/* C[m x NB] += A[m x k] P[k x NB] for the kernel gradient of a convolution:\n"
    " * row i = (t, q) of A is the window of channel q at tap t of a zero-padded\n"
    " * input, A(i, p) = a[q * acs + tap_at[t] + p]; P(p, s) = panel[p * ldp + s];\n"
    " * C(i, s) = c[i * ldc + s]. Rows past m are computed from row 0 and dropped. */\n"
    "static void rows_micro(long k, const real *restrict a0, const real *restrict a1,\n"
    "                       const real *restrict a2, const real *restrict a3,\n"
    "                       const real *restrict panel, long ldp, real *restrict c, long ldc, long mr)\n"
    "{\n"
    "    real acc[MR][NB] = {{0}}; /* MR = 4 rows, a0 .. a3 */\n"
    "    for (long p = 0; p < k; p++) {\n"
    "        const real *restrict bp = panel + p * ldp;\n"
    "        real x0 = a0[p], x1 = a1[p], x2 = a2[p], x3 = a3[p];\n"
    "        for (int s = 0; s < NB; s++) {\n"
    "            acc[0][s] += x0 * bp[s];\n"
    "            acc[1][s] += x1 * bp[s];\n"
    "            acc[2][s] += x2 * bp[s];\n"
    "            acc[3][s] += x3 * bp[s];\n"
    "        }\n"
    "    }\n"
    "    for (int r = 0; r < mr; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            c[r * ldc + s] += acc[r][s];\n"
    "}\n"
    "\n"
    "/* Rows i .. i + MR of C. */\n"
    "static void rows_block(long i, long m, long k, long ch, const real *restrict a,\n"
    "                       const long *restrict tap_at, long acs, const real *restrict panel,\n"
    "                       long ldp, real *restrict c, long ldc)\n"
    "{\n"
    "    const real *row[MR];\n"
    "    for (int r = 0; r < MR; r++) {\n"
    "        long q = i + r < m ? i + r : 0;\n"
    "        row[r] = a + q %% ch * acs + tap_at[q / ch];\n"
    "    }\n"
    "    rows_micro(k, row[0], row[1], row[2], row[3], panel, ldp, c + i * ldc, ldc,\n"
    "               m - i < MR ? m - i : MR);\n"
    "}\n"
    "\n"
    "/* Blocks of MR rows (k, ci) of the kernel gradient among the threads, each\n"
    " * summing over all of the group's positions for its rows. */\n"
    "static void mm_rows(long m, long k, long ch, const real *restrict a, const long *restrict tap_at,\n"
    "                    long acs, const real *restrict panel, long ldp, real *restrict c, long ldc)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if ((double)m * k * NB >= PAR_WORK && m > MR && omp_get_max_threads() > 1) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long i = 0; i < m; i += MR)\n"
    "            rows_block(i, m, k, ch, a, tap_at, acs, panel, ldp, c, ldc);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long i = 0; i < m; i += MR)\n"
    "        rows_block(i, m, k, ch, a, tap_at, acs, panel, ldp, c, ldc);\n"
    "}\n"
    "\n"
    "/* C[m x n] += A B, A(i, p) = a[i * ars + p * acs]: (ars, acs) = (lda, 1)\n"
    " * reads A, (1, lda) reads A^T (the parameter gradients z^T ybar). */\n"
    "static void mm_acc(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                   const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    mm_gen(m, n, k, a, ars, acs, b, ldb, 1, c, ldc);\n"
    "}\n"
    "\n"
    "/* C[m x n] += A[m x k] B[n x k]^T: the dual of a dense arrow reads W^T. */\n"
    "static void mm_nt(long m, long n, long k, const real *restrict a, long lda,\n"
    "                  const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    mm_gen(m, n, k, a, lda, 1, b, 1, ldb, c, ldc);\n"
    "}\n"
    "\n"
    "/* y[b, c, g] = bias[c] (+= when add), over a batch of blocks of c channels\n"
    " * times g grid points. */\n"
    "static void bias_set(real *restrict y, const real *restrict bias, long batch, long c, long g, int add)\n"
    "{\n"
    "    for (long n = 0; n < batch; n++)\n"
    "        for (long ch = 0; ch < c; ch++) {\n"
    "            real *row = y + (n * c + ch) * g;\n"
    "            for (long t = 0; t < g; t++)\n"
    "                row[t] = (add ? row[t] : 0) + bias[ch];\n"
    "        }\n"
    "}\n"
    "\n"
    "/* dbias[c] += sum over batch and grid of ybar[b, c, g] */\n"
    "static void bias_grad_ch(real *restrict db, const real *restrict ybar, long batch, long c, long g,\n"
    "                         long ch)\n"
    "{\n"
    "    for (long n = 0; n < batch; n++) {\n"
    "        const real *row = ybar + (n * c + ch) * g;\n"
    "        real t = 0;\n"
    "        for (long q = 0; q < g; q++)\n"
    "            t += row[q];\n"
    "        db[ch] += t;\n"
    "    }\n"
    "}\n"
    "\n"
    "/* (channels among the threads, each summing the whole batch for its own) */\n"
    "static void bias_grad(real *restrict db, const real *restrict ybar, long batch, long c, long g)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if ((double)batch * c * g >= PAR_WORK && c > 1 && omp_get_max_threads() > 1) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long ch = 0; ch < c; ch++)\n"
    "            bias_grad_ch(db, ybar, batch, c, g, ch);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long ch = 0; ch < c; ch++)\n"
    "        bias_grad_ch(db, ybar, batch, c, g, ch);\n"
    "}\n"
    "\n"
    "/* The output positions o of a grid arrow whose input position o * s + off\n"
    " * lies in [lo, hi): from o_first(off, s, lo) to o_end(off, s, hi, out). */\n"
    "static inline long o_first(long off, long s, long lo)\n"
    "{\n"
    "    long d = lo - off;\n"
    "    return d <= 0 ? 0 : (d + s - 1) / s;\n"
    "}\n"
    "\n"
    "static inline long o_end(long off, long s, long hi, long out)\n"
    "{\n"
    "    long d = hi - off, e = d <= 0 ? 0 : (d - 1) / s + 1;\n"
    "    return e < out ? e : out;\n"
    "}\n"
    "\n"
    "static void add_to(real *restrict y, const real *restrict x, long n)\n"
    "{\n"
    "    for (long k = 0; k < n; k++)\n"
    "        y[k] += x[k];\n"
    "}\n"
    "\n"
    "/* ---- activations sigma and their derivatives sigma'(y), given z = sigma(y) */\n"
    "\n"
    "%s"
    "static inline real act_relu(real y) { return y > 0 ? y : 0; }\n"
    "static inline real act_leaky_relu(real y, real alpha) { return y > 0 ? y : alpha * y; }\n"
    "static inline real act_gelu(real y) { return (real)0.5 * y * (1 + erf%s(y * (real)0.70710678118654752)); }\n"
    "static inline real act_softplus(real y) { return (y > 0 ? y : 0) + log1p%s(exp%s(-fabs%s(y))); }\n"
    "static inline real act_sin(real y) { return sin%s(y); }\n"
    "\n"
    "static inline real d_tanh(real y, real z) { (void)y; return 1 - z * z; }\n"
    "static inline real d_sigmoid(real y, real z) { (void)y; return z * (1 - z); }\n"
    "static inline real d_relu(real y, real z) { (void)z; return y > 0 ? 1 : 0; }\n"
    "static inline real d_leaky_relu(real y, real z, real alpha) { (void)z; return y > 0 ? 1 : alpha; }\n"
    "static inline real d_gelu(real y, real z)\n"
    "{\n"
    "    (void)z;\n"
    "    return (real)0.5 * (1 + erf%s(y * (real)0.70710678118654752))\n"
    "           + y * exp%s((real)-0.5 * y * y) * (real)0.39894228040143268;\n"
    "}\n"
    "static inline real d_softplus(real y, real z) { (void)z; return act_sigmoid(y); }\n"
    "static inline real d_sin(real y, real z) { (void)z; return cos%s(y); }\n"
    "\n";

/* softmax over the channels, which is not pointwise: at each grid point g of
 * [g0, g1) of every sample, the C values y[c * G + g]. exp%s is expf for f32. */
static const char softmax_kernels[] =
    "/* z = softmax(y) over the C channels at grid points [g0, g1) of G; the\n"
    " * maximum is subtracted first so exp cannot overflow */\n"
    "static void softmax_ch(const real *restrict y, real *restrict z, long batch, long C, long G,\n"
    "                       long g0, long g1)\n"
    "{\n"
    "    for (long n = 0; n < batch; n++)\n"
    "        for (long g = g0; g < g1; g++) {\n"
    "            const real *yg = y + n * C * G + g;\n"
    "            real *zg = z + n * C * G + g, mx = yg[0], sum = 0;\n"
    "            for (long c = 1; c < C; c++)\n"
    "                mx = yg[c * G] > mx ? yg[c * G] : mx;\n"
    "            for (long c = 0; c < C; c++)\n"
    "                sum += zg[c * G] = exp%s(yg[c * G] - mx);\n"
    "            for (long c = 0; c < C; c++)\n"
    "                zg[c * G] /= sum;\n"
    "        }\n"
    "}\n"
    "\n"
    "/* out = s * (x - <s, x>) over the channels: the softmax's Jacobian at\n"
    " * s = softmax(y), diag(s) - s s^T (symmetric), times x */\n"
    "static void softmax_jvp(const real *restrict s, const real *restrict x, real *restrict out,\n"
    "                        long batch, long C, long G, long g0, long g1)\n"
    "{\n"
    "    for (long n = 0; n < batch; n++)\n"
    "        for (long g = g0; g < g1; g++) {\n"
    "            long o = n * C * G + g;\n"
    "            real dot = 0;\n"
    "            for (long c = 0; c < C; c++)\n"
    "                dot += s[o + c * G] * x[o + c * G];\n"
    "            for (long c = 0; c < C; c++)\n"
    "                out[o + c * G] = s[o + c * G] * (x[o + c * G] - dot);\n"
    "        }\n"
    "}\n"
    "\n"
    "/* The gradient of <w, softmax_jvp(s, x)> in s, added to acc:\n"
    " * x * w - w <s, x> - x <s, w> */\n"
    "static void softmax_gate(const real *restrict s, const real *restrict x, const real *restrict w,\n"
    "                         real *restrict acc, long batch, long C, long G, long g0, long g1)\n"
    "{\n"
    "    for (long n = 0; n < batch; n++)\n"
    "        for (long g = g0; g < g1; g++) {\n"
    "            long o = n * C * G + g;\n"
    "            real sx = 0, sw = 0;\n"
    "            for (long c = 0; c < C; c++) {\n"
    "                sx += s[o + c * G] * x[o + c * G];\n"
    "                sw += s[o + c * G] * w[o + c * G];\n"
    "            }\n"
    "            for (long c = 0; c < C; c++)\n"
    "                acc[o + c * G] += x[o + c * G] * w[o + c * G] - w[o + c * G] * sx - x[o + c * G] * sw;\n"
    "        }\n"
    "}\n"
    "\n";
/* tanh and sigmoid in double: libm. */
static const char acts_f64[] =
    "static inline real act_tanh(real y) { return tanh(y); }\n"
    "static inline real act_sigmoid(real y) { return 1 / (1 + exp(-y)); }\n";

/* tanh and sigmoid in float: through exp_vec, plain arithmetic that clang
 * vectorizes (a call to expf would keep the loop scalar); within 2 ulp of
 * the correctly rounded value wherever the result is a normal float
 * (tests/test_vexp.c). */
static const char acts_f32[] =
    "/* e^x = 2^n e^r, n = round(x / ln 2) (the 1.5 * 2^23 trick), r = x - n ln 2\n"
    " * (ln 2 split in two for exactness), e^r by its Taylor series to r^8; results\n"
    " * below FLT_MIN flush to 0, above FLT_MAX give inf. */\n"
    "static inline real exp_vec(real x)\n"
    "{\n"
    "    real n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;\n"
    "    n = n < -126.0f ? -126.0f : n > 127.0f ? 127.0f : n;\n"
    "    real r = x - n * 0.693145751953125f;\n"
    "    r = r - n * 1.42860682030941723212e-6f;\n"
    "    real p = 1.0f / 40320;\n"
    "    p = p * r + 1.0f / 5040;\n"
    "    p = p * r + 1.0f / 720;\n"
    "    p = p * r + 1.0f / 120;\n"
    "    p = p * r + 1.0f / 24;\n"
    "    p = p * r + 1.0f / 6;\n"
    "    p = p * r + 0.5f;\n"
    "    p = p * r + 1.0f;\n"
    "    p = p * r + 1.0f;\n"
    "    int32_t bits = ((int32_t)n + 127) * 8388608; /* 2^n as a float's bits */\n"
    "    real scale;\n"
    "    memcpy(&scale, &bits, sizeof scale);\n"
    "    real v = x < -87.33654f ? 0.0f : p * scale;\n"
    "    return x > 88.72283f ? HUGE_VALF : v;\n"
    "}\n"
    "\n"
    "/* tanh y = (1 - e^-2|y|) / (1 + e^-2|y|) with the sign of y; below |y| = 0.4,\n"
    " * where 1 - e^-2|y| would cancel, its Taylor series to y^13. */\n"
    "static inline real act_tanh(real y)\n"
    "{\n"
    "    real a = fabsf(y), e = exp_vec(-2 * a), y2 = y * y;\n"
    "    real big = (1 - e) / (1 + e);\n"
    "    real p = 21844.0f / 6081075;\n"
    "    p = p * y2 - 1382.0f / 155925;\n"
    "    p = p * y2 + 62.0f / 2835;\n"
    "    p = p * y2 - 17.0f / 315;\n"
    "    p = p * y2 + 2.0f / 15;\n"
    "    p = p * y2 - 1.0f / 3;\n"
    "    return a < 0.4f ? y + y * y2 * p : copysignf(big, y);\n"
    "}\n"
    "static inline real act_sigmoid(real y) { return 1 / (1 + exp_vec(-y)); }\n";

/* A piece of the prelude: one function (with its comment) or the enum. */
typedef struct Piece {
  const char *text;
  size_t len;
  char name[3][24]; /* what it defines */
  bool needed;
} Piece;

static bool is_word(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

/* Whether text (len bytes) names `name` as a whole word. */
static bool mentions(const char *text, size_t len, const char *name) {
  size_t n = strlen(name);
  for (const char *p = text; p + n <= text + len; p++)
    if (memcmp(p, name, n) == 0 && (p == text || !is_word(p[-1])) &&
        (p + n == text + len || !is_word(p[n])))
      return true;
  return false;
}

/* What a piece defines: the enum's constants, or the function named on its
 * first line starting with "static". A banner comment defines nothing. */
static void name_piece(Piece *p) {
  const char *sig = NULL;
  for (const char *c = p->text; c + 7 <= p->text + p->len && !sig; c++)
    if ((c == p->text || c[-1] == '\n') && (memcmp(c, "static ", 7) == 0 || memcmp(c, "enum {", 6) == 0))
      sig = c;
  if (!sig)
    return;
  if (memcmp(sig, "enum", 4) == 0) {
    strcpy(p->name[0], "NB");
    strcpy(p->name[1], "MR");
    strcpy(p->name[2], "PAR_WORK");
    return;
  }
  const char *q = strchr(sig, '('), *w = q;
  while (w > sig && is_word(w[-1]))
    w--;
  size_t n = (size_t)(q - w);
  if (n >= sizeof p->name[0])
    n = sizeof p->name[0] - 1;
  memcpy(p->name[0], w, n);
}

/* Splits the prelude into pieces: a piece ends on a line that brings the
 * brace depth back to 0 and closes a statement, or, for a banner comment,
 * at the blank line after it. */
static int split(const char *text, Piece *out, int max) {
  int n = 0, depth = 0;
  const char *start = NULL;
  bool code = false;
  for (const char *line = text; *line && n < max;) {
    const char *end = strchr(line, '\n');
    end = end ? end + 1 : line + strlen(line);
    const char *t = line;
    while (*t == ' ')
      t++;
    bool comment = t[0] == '/' || t[0] == '*', blank = *t == '\n' || *t == '\0';
    if (!start && !blank) {
      start = line;
      code = false;
    }
    for (const char *c = line; c < end; c++)
      depth += *c == '{' ? 1 : *c == '}' ? -1 : 0;
    code |= !comment && !blank;
    size_t len = (size_t)(end - line);
    bool closes = code && depth == 0 && !comment &&
                  (memchr(line, ';', len) != NULL || memchr(line, '}', len) != NULL);
    if (start && (closes || (blank && !code))) {
      Piece *p = &out[n++];
      *p = (Piece){.text = start, .len = (size_t)((blank ? line : end) - start)};
      name_piece(p);
      start = NULL;
    }
    line = end;
  }
  return n;
}

long emit_nb(bool f32, int vec_bytes) { return 2 * vec_bytes / (f32 ? 4 : 8); }

long emit_grid_work(long k, long nb) {
  long kk = k < 256 ? k : 256; /* the prelude's KC and MR: 256, 4 */
  return kk * (nb + 4) + 4 * nb;
}

/* Writes the pieces of the prelude that `body` uses, with what they use. */
void emit_kernels(StrBuf *c, bool f32, int vec_bytes, const char *body) {
  const char *s = f32 ? "f" : "";
  StrBuf all = {0};
  /* two vectors of columns per row: 32 floats with AVX-512, 16 with AVX2 */
  sb_printf(&all, kernels, (int)emit_nb(f32, vec_bytes), f32 ? acts_f32 : acts_f64, s, s, s, s, s, s, s, s);
  sb_printf(&all, softmax_kernels, s);
  Piece pieces[64];
  int n = split(all.data, pieces, 64);
  size_t blen = strlen(body);
  /* the body grows with the machine: it is read once, word by word */
  bool in_body[64][3] = {{false}};
  Arena *a = arena_new();
  StrMap names = {0};
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 3; k++)
      if (pieces[i].name[k][0])
        strmap_put(a, &names, pieces[i].name[k], &in_body[i][k]);
  for (const char *w = body, *end = body + blen; w < end;) {
    const char *q = w;
    while (q < end && is_word(*q))
      q++;
    if (q > w && q - w < 24) {
      char word[24];
      memcpy(word, w, (size_t)(q - w));
      word[q - w] = '\0';
      bool *hit = strmap_get(&names, word);
      if (hit)
        *hit = true;
    }
    w = q > w ? q : w + 1;
  }
  arena_free(a);
  for (bool changed = true; changed;) {
    changed = false;
    for (int i = 0; i < n; i++) {
      Piece *p = &pieces[i];
      bool need = !p->name[0][0]; /* a comment or banner: always */
      for (int k = 0; k < 3 && !need; k++)
        if (p->name[k][0]) {
          need = in_body[i][k];
          for (int j = 0; j < n && !need; j++)
            need = j != i && pieces[j].needed && mentions(pieces[j].text, pieces[j].len, p->name[k]);
        }
      if (need && !p->needed)
        p->needed = changed = true;
    }
  }
  for (int i = 0; i < n; i++)
    if (pieces[i].needed)
      sb_printf(c, "%.*s\n", (int)pieces[i].len, pieces[i].text);
  sb_free(&all);
}
