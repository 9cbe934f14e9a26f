/* emit_kernels.c — the prelude of every generated file: the kernels the
 * generated code calls (matrix products, bias, grid bounds), the activations
 * with their derivatives, the softmax.
 *
 * The prelude is data: a table of kernels, each with the names it defines,
 * the kernels it calls and its C text. A generated file gets the kernels its
 * code names and, transitively, what they call, each once, callees first.
 * Texts take parameters, written $PARAM: the tuned kernels' tile, $MR rows by
 * $NB columns (NB: two vectors of the target), $KC rows of B per packed
 * panel, and $f, the suffix of libm's functions ("f" for float, "" for
 * double); a text that serves several kernels takes $NAME, the kernel's
 * name, and $ROWS, the digits that end it or MR (taps_micro, taps_micro6).
 *
 * Two sets of kernels, same names and signatures, so the call sites are the
 * same with either:
 * - tuned (the default): plain C written so that clang vectorizes it: small
 *   fixed-size accumulator arrays that stay in registers (register blocking),
 *   packed panels, unit-stride inner loops, OpenMP above PAR_WORK. Every
 *   call site passes compile-time sizes except the batch, and the kernels
 *   are static, so clang specializes them.
 * - plain (--kernels=plain): the obvious loops, one output element at a
 *   time, for reading the generated code (and as a reference for the tuned
 *   ones: the test suite runs models both ways). */
#include "emit_internal.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* ---- tuned kernels ----------------------------------------------------------- */

static const char k_tuned_sizes[] =
    "/* Threads (OpenMP, when compiled with -fopenmp): a kernel splits its OUTPUT\n"
    " * among the threads, never a sum, and every output element is computed by\n"
    " * the same operations in the same order as on one thread, so results are\n"
    " * bitwise the same for any number of threads. Below PAR_WORK multiply-adds a\n"
    " * call stays on the calling thread without entering OpenMP at all, and so\n"
    " * does a call inside a parallel region (the caller has split the work). */\n"
    "#ifdef _OPENMP\n"
    "#include <omp.h>\n"
    "#endif\n"
    "enum { MR = $MR,    /* rows of C per micro-kernel call */\n"
    "       NB = $NB,   /* columns of C kept in registers: two vectors */\n"
    "       KC = $KC,  /* rows of B packed at a time (NB x KC fits in L1) */\n"
    "       TR = $TR,    /* rows of a transposed B packed at a time (the target's best) */\n"
    "       SMALL_STACK = $SMALL_STACK, /* standalone code: no panel for the last columns */\n"
    "       PAR_WORK = 1 << 17 };\n";

static const char k_mm_micro[] =
    "/* C[MR x NB] += A[MR x kc] P[kc x NB] (add), or C = A P (C not read), P a\n"
    " * packed panel of B: the accumulators stay in registers while p runs.\n"
    " * A(i, p) = a[i * ars + p * acs]. */\n"
    "static void mm_micro(long kc, const real *restrict a, long ars, long acs,\n"
    "                     const real *restrict panel, real *restrict c, long ldc, int add)\n"
    "{\n"
    "    real acc[MR][NB];\n"
    "    for (int r = 0; r < MR; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            acc[r][s] = add ? c[r * ldc + s] : 0;\n"
    "#if defined(__clang__) /* unrolled, clang spills the accumulators */\n"
    "#pragma clang loop unroll(disable)\n"
    "#endif\n"
    "    for (long p = 0; p < kc; p++)\n"
    "        for (int r = 0; r < MR; r++) {\n"
    "            real ar = a[r * ars + p * acs];\n"
    "            for (int s = 0; s < NB; s++)\n"
    "                acc[r][s] += ar * panel[p * NB + s];\n"
    "        }\n"
    "    for (int r = 0; r < MR; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            c[r * ldc + s] = acc[r][s];\n"
    "}\n";

static const char k_mm_micro_half[] =
    "/* mm_micro for a last block of at most NB / 2 columns: 2 MR rows by one\n"
    " * vector, as many accumulators, none of them idle. The panel is mm_gen_seq's\n"
    " * (rows of NB, zero past the block). */\n"
    "static void mm_micro_half(long kc, const real *restrict a, long ars, long acs,\n"
    "                          const real *restrict panel, real *restrict c, long ldc, int add)\n"
    "{\n"
    "    real acc[2 * MR][NB / 2];\n"
    "    for (int r = 0; r < 2 * MR; r++)\n"
    "        for (int s = 0; s < NB / 2; s++)\n"
    "            acc[r][s] = add ? c[r * ldc + s] : 0;\n"
    "#if defined(__clang__)\n"
    "#pragma clang loop unroll(disable)\n"
    "#endif\n"
    "    for (long p = 0; p < kc; p++)\n"
    "        for (int r = 0; r < 2 * MR; r++) {\n"
    "            real ar = a[r * ars + p * acs];\n"
    "            for (int s = 0; s < NB / 2; s++)\n"
    "                acc[r][s] += ar * panel[p * NB + s];\n"
    "        }\n"
    "    for (int r = 0; r < 2 * MR; r++)\n"
    "        for (int s = 0; s < NB / 2; s++)\n"
    "            c[r * ldc + s] = acc[r][s];\n"
    "}\n";

static const char k_mm_gen_seq[] =
    "/* C[m x n] += A[m x k] B[k x n] (add), or C = A B (C not read: no zeros\n"
    " * written first), with A(i, p) = a[i * ars + p * acs] and\n"
    " * B(p, j) = b[p * bps + j * bjs]: any of A, B may be read transposed. Panels\n"
    " * of B (KC x NB) are copied to a contiguous buffer on the stack first, so\n"
    " * the micro-kernel reads them with unit stride whatever B's layout (a slice\n"
    " * of a shared weight, or W^T for the dual machine), in chunks of equal\n"
    " * size (784 rows: 4 of 196, not 3 of KC = 256 and one of 16). The last\n"
    " * nb < NB columns go through a micro-kernel too (mm_micro_half when\n"
    " * nb <= NB / 2): their panel is zero past nb, and the kernel works on a\n"
    " * copy of C's tile; standalone code, for small stacks, takes plain loops\n"
    " * for them instead. Any chunks and tiles add each C(i, j)'s terms in the\n"
    " * order of p, after C's value (add) or from 0: C = A B gives the bits of\n"
    " * C = 0 and C += A B. */\n"
    "static void mm_gen_seq(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                       const real *restrict b, long bps, long bjs, real *restrict c, long ldc,\n"
    "                       int add)\n"
    "{\n"
    "    real panel[KC * NB], tile[MR * NB];\n"
    "    const long chunks = (k + KC - 1) / KC, kstep = chunks ? (k + chunks - 1) / chunks : 0;\n"
    "    for (long j = 0; j < n; j += NB) {\n"
    "        long nb = n - j < NB ? n - j : NB;\n"
    "        if (nb < NB && SMALL_STACK) {\n"
    "            for (long i = 0; i < m; i++)\n"
    "                for (long s = j; s < n && !add; s++)\n"
    "                    c[i * ldc + s] = 0;\n"
    "            for (long i = 0; i < m; i++)\n"
    "                for (long p = 0; p < k; p++) {\n"
    "                    real ar = a[i * ars + p * acs];\n"
    "                    for (long s = j; s < n; s++)\n"
    "                        c[i * ldc + s] += ar * b[p * bps + s * bjs];\n"
    "                }\n"
    "            break;\n"
    "        }\n"
    "        for (long p0 = 0; p0 < k; p0 += kstep) {\n"
    "            long kc = k - p0 < kstep ? k - p0 : kstep, p = 0;\n"
    "            const int keep = add || p0 > 0; /* C holds terms to add to */\n"
    "            if (nb < NB)\n"
    "                for (long q = 0; q < kc * NB; q++)\n"
    "                    panel[q] = 0;\n"
    "            if (bps == 1 && nb == NB) /* B read transposed (W^T): TR rows at a time */\n"
    "                for (; p + TR <= kc; p += TR) {\n"
    "                    real run[NB * TR]; /* NB runs of TR, read as they lie in B */\n"
    "                    for (int s = 0; s < NB; s++)\n"
    "                        for (int q = 0; q < TR; q++)\n"
    "                            run[s * TR + q] = b[p0 + p + q + (j + s) * bjs];\n"
    "                    for (int s = 0; s < NB; s++) /* clang transposes with shuffles */\n"
    "                        for (int q = 0; q < TR; q++)\n"
    "                            panel[(p + q) * NB + s] = run[s * TR + q];\n"
    "                }\n"
    "            for (; p < kc; p++) {\n"
    "                const real *restrict row = b + (p0 + p) * bps + j * bjs;\n"
    "                if (bjs == 1 && nb == NB) /* a row of B: a run of a known length */\n"
    "                    for (int s = 0; s < NB; s++) /* (copied inline, not by memcpy) */\n"
    "                        panel[p * NB + s] = row[s];\n"
    "                else if (bjs == 1)\n"
    "                    for (long s = 0; s < nb; s++)\n"
    "                        panel[p * NB + s] = row[s];\n"
    "                else\n"
    "                    for (long s = 0; s < nb; s++)\n"
    "                        panel[p * NB + s] = row[s * bjs];\n"
    "            }\n"
    "            long i = 0;\n"
    "            if (2 * nb <= NB) /* a narrow last block: 2 MR rows at a time */\n"
    "                for (; i + 2 * MR <= m; i += 2 * MR) {\n"
    "                    const real *restrict ai = a + i * ars + p0 * acs;\n"
    "                    if (2 * nb == NB) {\n"
    "                        mm_micro_half(kc, ai, ars, acs, panel, c + i * ldc + j, ldc, keep);\n"
    "                        continue;\n"
    "                    }\n"
    "                    for (int r = 0; r < 2 * MR; r++)\n"
    "                        for (long s = 0; s < NB / 2; s++)\n"
    "                            tile[r * NB / 2 + s] = keep && s < nb ? c[(i + r) * ldc + j + s] : 0;\n"
    "                    mm_micro_half(kc, ai, ars, acs, panel, tile, NB / 2, 1);\n"
    "                    for (int r = 0; r < 2 * MR; r++)\n"
    "                        for (long s = 0; s < nb; s++)\n"
    "                            c[(i + r) * ldc + j + s] = tile[r * NB / 2 + s];\n"
    "                }\n"
    "            for (; i + MR <= m; i += MR) {\n"
    "                const real *restrict ai = a + i * ars + p0 * acs;\n"
    "                if (nb == NB) {\n"
    "                    mm_micro(kc, ai, ars, acs, panel, c + i * ldc + j, ldc, keep);\n"
    "                    continue;\n"
    "                }\n"
    "                for (int r = 0; r < MR; r++)\n"
    "                    for (long s = 0; s < NB; s++)\n"
    "                        tile[r * NB + s] = keep && s < nb ? c[(i + r) * ldc + j + s] : 0;\n"
    "                mm_micro(kc, ai, ars, acs, panel, tile, NB, 1);\n"
    "                for (int r = 0; r < MR; r++)\n"
    "                    for (long s = 0; s < nb; s++)\n"
    "                        c[(i + r) * ldc + j + s] = tile[r * NB + s];\n"
    "            }\n"
    "            for (; i < m; i++) {\n"
    "                for (long s = 0; s < nb && !keep; s++)\n"
    "                    c[i * ldc + j + s] = 0;\n"
    "                for (long p = 0; p < kc; p++) {\n"
    "                    real ar = a[i * ars + (p0 + p) * acs];\n"
    "                    for (long s = 0; s < nb; s++)\n"
    "                        c[i * ldc + j + s] += ar * panel[p * NB + s];\n"
    "                }\n"
    "            }\n"
    "        }\n"
    "    }\n"
    "}\n";

static const char k_mm_gen[] =
    "/* The same, its rows split among the threads: each thread takes a contiguous\n"
    " * range cut at a multiple of MR, so every row goes through the same path\n"
    " * (micro-kernel or remainder) as on one thread. Rows are the batch in the\n"
    " * forward and dual products, the input features in dW = z^T ybar (each\n"
    " * thread summing the whole batch for its rows of dW). */\n"
    "static void mm_gen(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                   const real *restrict b, long bps, long bjs, real *restrict c, long ldc, int add)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if (m >= 2 * MR && (double)m * n * k >= PAR_WORK && omp_get_max_threads() > 1 && !omp_in_parallel()) {\n"
    "#pragma omp parallel\n"
    "        {\n"
    "            long blocks = (m + MR - 1) / MR, t = omp_get_thread_num(), T = omp_get_num_threads();\n"
    "            long lo = blocks * t / T * MR, hi = blocks * (t + 1) / T * MR;\n"
    "            if (hi > m)\n"
    "                hi = m;\n"
    "            if (lo < hi)\n"
    "                mm_gen_seq(hi - lo, n, k, a + lo * ars, ars, acs, b, bps, bjs, c + lo * ldc, ldc, add);\n"
    "        }\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    mm_gen_seq(m, n, k, a, ars, acs, b, bps, bjs, c, ldc, add);\n"
    "}\n";

static const char k_tuned_mm_grid[] =
    "/* C[m x n] += A[m x k] B[k x n] for the loop nests of grid arrows, where the\n"
    " * contraction index p and the column index j each stand for two loop\n"
    " * indices, p = (p1, p0) with p0 < kn and j = (j1, j0) with j0 < nn (for\n"
    " * instance j = (sample, position)):\n"
    " *   A(i, p) = a[i * ai + p1 * ap1 + p0 * ap0]\n"
    " *   B(p, j) = b[p1 * bp1 + p0 * bp0 + j1 * bj1 + j0 * bj0]\n"
    " *           (bs[p1][p0 * bp0 + j1 * bj1 + j0 * bj0] when bs is given: the\n"
    " *           sources of a product over several, each where it lies)\n"
    " *   C(i, j) = c[i * ci + j1 * cj1 + j0 * cj0]\n"
    " * In chunks of KC values of p: panels of B (KC x NB) are gathered to work,\n"
    " * zero past the edges, so every product runs through mm_micro; its MR x NB\n"
    " * result is then added to C. A is read in place when p steps through it\n"
    " * evenly (ap1 = kn ap0: a weight's taps) and its rows fill MR, else all of\n"
    " * its rows are gathered once per chunk. work holds kk (NB + mm) + MR NB\n"
    " * scalars, kk = min(k, KC), mm = m rounded up to MR: the caller's scratch,\n"
    " * so that no frame holds a panel (a small stack). When rows j1 hold at\n"
    " * least NB / 2 columns, a block of columns stays inside one row; shorter\n"
    " * rows are packed across, a run of columns of one row at a time. */\n"
    "static void mm_grid(long m, long n, long k, long kn, long nn,\n"
    "                    const real *restrict a, long ai, long ap1, long ap0,\n"
    "                    const real *restrict b, const real *const *bs, long bp1, long bp0,\n"
    "                    long bj1, long bj0,\n"
    "                    real *restrict c, long ci, long cj1, long cj0, real *restrict work)\n"
    "{\n"
    "    const long kk = k < KC ? k : KC, mm = (m + MR - 1) / MR * MR;\n"
    "    real *restrict bpanel = work, *restrict apanel = work + kk * NB, *restrict tile = apanel + kk * mm;\n"
    "    const int rows = 2 * nn >= NB, a_even = ap1 == kn * ap0 || k <= kn;\n"
    "    const int by_run = 4 * nn >= NB; /* rows shorter than NB / 4: runs of one column */\n"
    "    long run_b[NB], run_c[NB], run_at[NB + 1], runs; /* runs of a block's columns within a row */\n"
    "    for (long p0 = 0; p0 < k; p0 += KC) {\n"
    "        long kc = k - p0 < KC ? k - p0 : KC;\n"
    "        for (long i = 0; i < m; i += MR) { /* the rows of A not read in place */\n"
    "            long mr = m - i < MR ? m - i : MR;\n"
    "            if (a_even && mr == MR)\n"
    "                continue;\n"
    "            for (long p = 0, q1 = p0 / kn, q0 = p0 % kn; p < kc; p++) {\n"
    "                const long aoff = q1 * ap1 + q0 * ap0;\n"
    "                for (long r = 0; r < MR; r++)\n"
    "                    apanel[i * kc + p * MR + r] = r < mr ? a[(i + r) * ai + aoff] : 0;\n"
    "                if (++q0 == kn)\n"
    "                    q0 = 0, q1++;\n"
    "            }\n"
    "        }\n"
    "        for (long j = 0; j < n;) {\n"
    "            long nb = n - j < NB ? n - j : NB;\n"
    "            if (rows && nn - j % nn < nb)\n"
    "                nb = nn - j % nn; /* the block ends with its row */\n"
    "            runs = 0;\n"
    "            for (long s = 0; s < nb;) { /* where each run starts in B and C, and its column */\n"
    "                long j1 = (j + s) / nn, j0 = (j + s) % nn, len = !by_run ? 1 : nn - j0 < nb - s ? nn - j0 : nb - s;\n"
    "                run_b[runs] = j1 * bj1 + j0 * bj0;\n"
    "                run_c[runs] = j1 * cj1 + j0 * cj0;\n"
    "                run_at[runs++] = s;\n"
    "                s += len;\n"
    "            }\n"
    "            run_at[runs] = nb;\n"
    "            /* row p0 + p of B lives at b + q1 * bp1 + q0 * bp0 (bs[q1] + q0 * bp0),\n"
    "             * (q1, q0) = p0 + p */\n"
    "            for (long p = 0, q1 = p0 / kn, q0 = p0 % kn; p < kc; p++) {\n"
    "                real *restrict row = bpanel + p * NB;\n"
    "                const real *bp = (bs ? bs[q1] : b + q1 * bp1) + q0 * bp0;\n"
    "                for (long r = 0; r < runs && !by_run; r++)\n"
    "                    row[r] = bp[run_b[r]];\n"
    "                for (long r = 0; r < runs && by_run; r++) {\n"
    "                    const real *restrict from = bp + run_b[r];\n"
    "                    real *restrict to = row + run_at[r];\n"
    "                    long len = run_at[r + 1] - run_at[r];\n"
    "                    if (bj0 == 1)\n"
    "                        for (long s = 0; s < len; s++)\n"
    "                            to[s] = from[s];\n"
    "                    else\n"
    "                        for (long s = 0; s < len; s++)\n"
    "                            to[s] = from[s * bj0];\n"
    "                }\n"
    "                for (long s = nb; s < NB; s++)\n"
    "                    row[s] = 0;\n"
    "                if (++q0 == kn)\n"
    "                    q0 = 0, q1++;\n"
    "            }\n"
    "            for (long i = 0; i < m; i += MR) {\n"
    "                long mr = m - i < MR ? m - i : MR;\n"
    "                if (a_even && mr == MR)\n"
    "                    mm_micro(kc, a + i * ai + (p0 / kn) * ap1 + (p0 % kn) * ap0, ai, ap0, bpanel, tile, NB, 0);\n"
    "                else\n"
    "                    mm_micro(kc, apanel + i * kc, 1, MR, bpanel, tile, NB, 0);\n"
    "                for (long r = 0; r < mr; r++) {\n"
    "                    real *restrict cr = c + (i + r) * ci;\n"
    "                    for (long u = 0; u < runs && !by_run; u++)\n"
    "                        cr[run_c[u]] += tile[r * NB + u];\n"
    "                    for (long u = 0; u < runs && by_run; u++) {\n"
    "                        real *restrict to = cr + run_c[u];\n"
    "                        const real *restrict from = tile + r * NB + run_at[u];\n"
    "                        long len = run_at[u + 1] - run_at[u];\n"
    "                        if (cj0 == 1)\n"
    "                            for (long s = 0; s < len; s++)\n"
    "                                to[s] += from[s];\n"
    "                        else\n"
    "                            for (long s = 0; s < len; s++)\n"
    "                                to[s * cj0] += from[s];\n"
    "                    }\n"
    "                }\n"
    "            }\n"
    "            j += nb;\n"
    "        }\n"
    "    }\n"
    "}\n";

static const char k_taps_micro[] =
    "/* C[m x n] = sum over taps t and channels q of A(i, (t, q)) B((t, q), j), set\n"
    " * (not added): a convolution whose patch matrix is read in place from a\n"
    " * zero-padded input, row (t, q) the window of channel q at tap t:\n"
    " *   A(i, (t, q)) = a[(t * ch + q) * m + i]   packed weights, m a multiple of MR\n"
    " *   B((t, q), j) = b[q * bcs + tap_at[t] + j] read up to the next multiple of NB past n\n"
    " *   C(i, j) = c[i * ldc + j]                  ldc a multiple of NB\n"
    " * Tap t reads the grid only for the columns [tap_on[2 t], tap_on[2 t + 1]),\n"
    " * zeros elsewhere: a block of columns j0 .. j0 + NB outside skips it.\n"
    " * $ROWS rows of C a call: the text serves taps_micro, MR rows, and\n"
    " * taps_micro6, 6 rows, whose twelve vector accumulators keep both FMA\n"
    " * pipes busy where MR's eight left them waiting (8 rows spilled). */\n"
    "static void $NAME(long taps, long ch, const real *restrict a, long m, long ats,\n"
    "                       const real *restrict b, const long *restrict tap_at,\n"
    "                       const long *restrict tap_on, long j0, long bcs,\n"
    "                       real *restrict c, long ldc, int add)\n"
    "{\n"
    "    real acc[$ROWS][NB];\n"
    "    for (int r = 0; r < $ROWS; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            acc[r][s] = add ? c[r * ldc + s] : 0;\n"
    "    for (long t = 0; t < taps; t++) {\n"
    "        if (tap_on[2 * t] >= j0 + NB || tap_on[2 * t + 1] <= j0)\n"
    "            continue;\n"
    "        const real *restrict bt = b + tap_at[t];\n"
    "        const real *restrict at = a + t * ats;\n"
    "#if defined(__clang__) /* unrolled, clang spills the accumulators */\n"
    "#pragma clang loop unroll(disable)\n"
    "#endif\n"
    "        for (long q = 0; q < ch; q++)\n"
    "            for (int r = 0; r < $ROWS; r++) {\n"
    "                real ar = at[q * m + r];\n"
    "                for (int s = 0; s < NB; s++)\n"
    "                    acc[r][s] += ar * bt[q * bcs + s];\n"
    "            }\n"
    "    }\n"
    "    for (int r = 0; r < $ROWS; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            c[r * ldc + s] = acc[r][s];\n"
    "}\n";

static const char k_taps_cols[] =
    "/* One block of NB columns of mm_taps, the channels in chunks of taps x chunk\n"
    " * <= KC rows: the rows of B the block reads stay in L1 while every row\n"
    " * block of A passes. */\n"
    "static void taps_cols(long m, long taps, long ch, const real *restrict a, const real *restrict b,\n"
    "                      const long *restrict tap_at, const long *restrict tap_on, long j0, long bcs,\n"
    "                      real *restrict c, long ldc)\n"
    "{\n"
    "    long chunk = KC / taps > 0 ? KC / taps : 1;\n"
    "    for (long q0 = 0; q0 < ch; q0 += chunk) {\n"
    "        long qc = ch - q0 < chunk ? ch - q0 : chunk;\n"
    "        long i = 0; /* 6 rows a call, then MR: m - i stays a multiple of MR */\n"
    "        for (; i < m / 12 * 12; i += 6)\n"
    "            taps_micro6(taps, qc, a + q0 * m + i, m, ch * m, b + q0 * bcs, tap_at, tap_on, j0,\n"
    "                        bcs, c + i * ldc, ldc, q0 > 0);\n"
    "        for (; i < m; i += MR)\n"
    "            taps_micro(taps, qc, a + q0 * m + i, m, ch * m, b + q0 * bcs, tap_at, tap_on, j0,\n"
    "                       bcs, c + i * ldc, ldc, q0 > 0);\n"
    "    }\n"
    "}\n";

static const char k_tuned_mm_taps[] =
    "static void mm_taps(long m, long n, long taps, long ch, const real *restrict a,\n"
    "                    const real *restrict b, const long *restrict tap_at,\n"
    "                    const long *restrict tap_on, long bcs, real *restrict c, long ldc)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if ((double)m * n * taps * ch >= PAR_WORK && n > NB && omp_get_max_threads() > 1 && !omp_in_parallel()) {\n"
    "        /* blocks of NB columns (samples and positions) among the threads */\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long j = 0; j < n; j += NB)\n"
    "            taps_cols(m, taps, ch, a, b + j, tap_at, tap_on, j, bcs, c + j, ldc);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long j = 0; j < n; j += NB)\n"
    "        taps_cols(m, taps, ch, a, b + j, tap_at, tap_on, j, bcs, c + j, ldc);\n"
    "}\n";

static const char k_taps_row[] =
    "/* mm_taps for a convolution into one channel: C[1 x n], A((t, q)) = a[t * ch + q],\n"
    " * 4 NB columns a call. A row of A meets each element of B once, so each\n"
    " * multiply-add loads its own vector of B, and the accumulators are the\n"
    " * columns: the MR-row micro-kernel would compute MR - 1 rows of zeros.\n"
    " * The channels go in chunks whose rows of B (taps x chunk of 4 NB) stay in\n"
    " * L1 while every tap passes: all channels at once, each tap would stream\n"
    " * the whole of B from L2. */\n"
    "static void taps_row(long taps, long ch, const real *restrict a, const real *restrict b,\n"
    "                     const long *restrict tap_at, const long *restrict tap_on, long j0, long bcs,\n"
    "                     real *restrict c)\n"
    "{\n"
    "    real acc[4 * NB] = {0};\n"
    "    const long chunk = KC / (4 * taps) > 0 ? KC / (4 * taps) : 1;\n"
    "    for (long q0 = 0; q0 < ch; q0 += chunk) {\n"
    "        const long qc = ch - q0 < chunk ? ch - q0 : chunk;\n"
    "        for (long t = 0; t < taps; t++) {\n"
    "            if (tap_on[2 * t] >= j0 + 4 * NB || tap_on[2 * t + 1] <= j0)\n"
    "                continue;\n"
    "            const real *restrict bt = b + tap_at[t] + q0 * bcs;\n"
    "            const real *restrict at = a + t * ch + q0;\n"
    "#if defined(__clang__) /* unrolled, clang spills the accumulators */\n"
    "#pragma clang loop unroll(disable)\n"
    "#endif\n"
    "            for (long q = 0; q < qc; q++) {\n"
    "                real aq = at[q];\n"
    "                for (int s = 0; s < 4 * NB; s++)\n"
    "                    acc[s] += aq * bt[q * bcs + s];\n"
    "            }\n"
    "        }\n"
    "    }\n"
    "    for (int s = 0; s < 4 * NB; s++)\n"
    "        c[s] = acc[s];\n"
    "}\n";

static const char k_tuned_mm_taps_row[] =
    "/* B read up to the next multiple of 4 NB past n, C written up to it */\n"
    "static void mm_taps_row(long n, long taps, long ch, const real *restrict a, const real *restrict b,\n"
    "                        const long *restrict tap_at, const long *restrict tap_on, long bcs,\n"
    "                        real *restrict c)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if ((double)n * taps * ch >= PAR_WORK && n > 4 * NB && omp_get_max_threads() > 1 && !omp_in_parallel()) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long j = 0; j < n; j += 4 * NB)\n"
    "            taps_row(taps, ch, a, b + j, tap_at, tap_on, j, bcs, c + j);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long j = 0; j < n; j += 4 * NB)\n"
    "        taps_row(taps, ch, a, b + j, tap_at, tap_on, j, bcs, c + j);\n"
    "}\n";

static const char k_plain_mm_taps_row[] =
    "/* mm_taps for a convolution into one channel: C[1 x n], A((t, q)) = a[t * ch + q] */\n"
    "static void mm_taps_row(long n, long taps, long ch, const real *restrict a, const real *restrict b,\n"
    "                        const long *restrict tap_at, const long *restrict tap_on, long bcs,\n"
    "                        real *restrict c)\n"
    "{\n"
    "    mm_taps(1, n, taps, ch, a, b, tap_at, tap_on, bcs, c, n);\n"
    "}\n";

static const char k_rows_micro[] =
    "/* C[m x NB] += A[m x k] P[k x NB] for the kernel gradient of a convolution:\n"
    " * row i = (t, q) of A is the window of channel q at tap t of a zero-padded\n"
    " * input, A(i, p) = a[q * acs + tap_at[t] + p]; P(p, s) = panel[p * ldp + s];\n"
    " * C(i, s) = c[i * ldc + s]. 6 rows a call, row[r] the window of row r (as\n"
    " * taps_micro6: twelve vector accumulators; rows past m are computed from\n"
    " * row 0 and dropped). */\n"
    "static void rows_micro(long k, const real *const *row, const real *restrict panel, long ldp,\n"
    "                       real *restrict c, long ldc, long mr)\n"
    "{\n"
    "    real acc[6][NB] = {{0}};\n"
    "#if defined(__clang__) /* unrolled, clang spills the accumulators */\n"
    "#pragma clang loop unroll(disable)\n"
    "#endif\n"
    "    for (long p = 0; p < k; p++) {\n"
    "        const real *restrict bp = panel + p * ldp;\n"
    "        for (int r = 0; r < 6; r++) {\n"
    "            real x = row[r][p];\n"
    "            for (int s = 0; s < NB; s++)\n"
    "                acc[r][s] += x * bp[s];\n"
    "        }\n"
    "    }\n"
    "    for (int r = 0; r < mr; r++)\n"
    "        for (int s = 0; s < NB; s++)\n"
    "            c[r * ldc + s] += acc[r][s];\n"
    "}\n";

static const char k_rows_narrow[] =
    "/* rows_micro for a panel of NB / 2 columns (a kernel gradient of at most\n"
    " * NB / 2 output channels): 2 MR rows, row[r] the window of row r, by one\n"
    " * vector of columns. */\n"
    "static void rows_narrow(long k, const real *const *row, const real *restrict panel, long ldp,\n"
    "                        real *restrict c, long ldc, long mr)\n"
    "{\n"
    "    real acc[2 * MR][NB / 2] = {{0}};\n"
    "#if defined(__clang__) /* unrolled, clang spills the accumulators */\n"
    "#pragma clang loop unroll(disable)\n"
    "#endif\n"
    "    for (long p = 0; p < k; p++) {\n"
    "        const real *restrict bp = panel + p * ldp;\n"
    "        for (int r = 0; r < 2 * MR; r++) {\n"
    "            real x = row[r][p];\n"
    "            for (int s = 0; s < NB / 2; s++)\n"
    "                acc[r][s] += x * bp[s];\n"
    "        }\n"
    "    }\n"
    "    for (int r = 0; r < mr; r++)\n"
    "        for (int s = 0; s < NB / 2; s++)\n"
    "            c[r * ldc + s] += acc[r][s];\n"
    "}\n";

static const char k_rows_block[] =
    "/* Rows i .. i + rows of C, rows = 6 for a panel of NB columns, 2 MR for\n"
    " * one of NB / 2, over the positions [p0, p1) where one of their taps\n"
    " * reads the grid (tap_on; zeros elsewhere). */\n"
    "static void rows_block(long i, long rows, long m, long k, long ch, const real *restrict a,\n"
    "                       const long *restrict tap_at, const long *restrict tap_on, long acs,\n"
    "                       const real *restrict panel, long ldp, real *restrict c, long ldc)\n"
    "{\n"
    "    long mr = m - i < rows ? m - i : rows, p0 = k, p1 = 0;\n"
    "    for (int r = 0; r < mr; r++) {\n"
    "        long t = (i + r) / ch;\n"
    "        p0 = tap_on[2 * t] < p0 ? tap_on[2 * t] : p0;\n"
    "        p1 = tap_on[2 * t + 1] > p1 ? tap_on[2 * t + 1] : p1;\n"
    "    }\n"
    "    p0 = p0 > 0 ? p0 : 0;\n"
    "    p1 = p1 < k ? p1 : k;\n"
    "    if (p0 >= p1)\n"
    "        return;\n"
    "    const real *row[2 * MR];\n"
    "    for (int r = 0; r < rows; r++) {\n"
    "        long q = i + r < m ? i + r : 0;\n"
    "        row[r] = a + q % ch * acs + tap_at[q / ch] + p0;\n"
    "    }\n"
    "    const real *restrict pp = panel + p0 * ldp;\n"
    "    if (rows > 6)\n"
    "        rows_narrow(p1 - p0, row, pp, ldp, c + i * ldc, ldc, mr);\n"
    "    else\n"
    "        rows_micro(p1 - p0, row, pp, ldp, c + i * ldc, ldc, mr);\n"
    "}\n";

static const char k_tuned_mm_rows[] =
    "/* Blocks of rows (k, ci) of the kernel gradient among the threads, each\n"
    " * summing over all of the group's positions for its rows; cols, the\n"
    " * panel's columns, is NB or NB / 2. */\n"
    "static void mm_rows(long m, long k, long ch, const real *restrict a, const long *restrict tap_at,\n"
    "                    const long *restrict tap_on, long acs, const real *restrict panel, long ldp,\n"
    "                    long cols, real *restrict c, long ldc)\n"
    "{\n"
    "    long rows = cols < NB ? 2 * MR : 6;\n"
    "#ifdef _OPENMP\n"
    "    if ((double)m * k * cols >= PAR_WORK && m > rows && omp_get_max_threads() > 1 && !omp_in_parallel()) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long i = 0; i < m; i += rows)\n"
    "            rows_block(i, rows, m, k, ch, a, tap_at, tap_on, acs, panel, ldp, c, ldc);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long i = 0; i < m; i += rows)\n"
    "        rows_block(i, rows, m, k, ch, a, tap_at, tap_on, acs, panel, ldp, c, ldc);\n"
    "}\n";

static const char k_tuned_mm_acc[] =
    "/* C[m x n] += A B, A(i, p) = a[i * ars + p * acs]: (ars, acs) = (lda, 1)\n"
    " * reads A, (1, lda) reads A^T (the parameter gradients z^T ybar). */\n"
    "static void mm_acc(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                   const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    mm_gen(m, n, k, a, ars, acs, b, ldb, 1, c, ldc, 1);\n"
    "}\n";

static const char k_tuned_mm_set[] =
    "/* C[m x n] = A B: mm_acc writing C, not adding to it (no zeros written first). */\n"
    "static void mm_set(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                   const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    mm_gen(m, n, k, a, ars, acs, b, ldb, 1, c, ldc, 0);\n"
    "}\n";

static const char k_tuned_mm_nt[] =
    "/* C[m x n] += A[m x k] B[n x k]^T: the dual of a dense arrow reads W^T. */\n"
    "static void mm_nt(long m, long n, long k, const real *restrict a, long lda,\n"
    "                  const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    mm_gen(m, n, k, a, lda, 1, b, 1, ldb, c, ldc, 1);\n"
    "}\n";

static const char k_tuned_mm_nt_set[] =
    "/* C[m x n] = A[m x k] B[n x k]^T: mm_nt writing C, not adding to it. */\n"
    "static void mm_nt_set(long m, long n, long k, const real *restrict a, long lda,\n"
    "                      const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    mm_gen(m, n, k, a, lda, 1, b, 1, ldb, c, ldc, 0);\n"
    "}\n";

static const char k_bias_grad_ch[] =
    "/* dbias[c] += sum over batch and grid of ybar[b, c, g]; a sample's grid\n"
    " * in NB / 2 partial sums (one vector: a sum in a single register would\n"
    " * wait for each add), then those and the last g % (NB / 2) in order */\n"
    "static void bias_grad_ch(real *restrict db, const real *restrict ybar, long batch, long c, long g,\n"
    "                         long ch)\n"
    "{\n"
    "    for (long n = 0; n < batch; n++) {\n"
    "        const real *row = ybar + (n * c + ch) * g;\n"
    "        real t = 0;\n"
    "        long q = 0;\n"
    "        if (g >= NB / 2) {\n"
    "            real part[NB / 2] = {0};\n"
    "            for (; q + NB / 2 <= g; q += NB / 2)\n"
    "                for (int s = 0; s < NB / 2; s++)\n"
    "                    part[s] += row[q + s];\n"
    "            for (int s = 0; s < NB / 2; s++)\n"
    "                t += part[s];\n"
    "        }\n"
    "        for (; q < g; q++)\n"
    "            t += row[q];\n"
    "        db[ch] += t;\n"
    "    }\n"
    "}\n";

static const char k_tuned_split_groups[] =
    "/* Whether a windowed product shares out its groups of samples among the\n"
    " * threads, each thread with its own padded buffer: when it has PAR_WORK\n"
    " * multiply-adds and two groups or more for every thread. Otherwise its\n"
    " * kernels split each group's product. */\n"
    "static int split_groups(long groups, double macs)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    return macs >= PAR_WORK && groups >= 2 * omp_get_max_threads();\n"
    "#else\n"
    "    (void)groups;\n"
    "    (void)macs;\n"
    "    return 0;\n"
    "#endif\n"
    "}\n";

static const char k_bias_sample[] =
    "/* y[c, g] = bias[c] (+= when add): one sample's blocks of g grid points. */\n"
    "static void bias_sample(real *restrict y, const real *restrict bias, long c, long g, int add)\n"
    "{\n"
    "    for (long ch = 0; ch < c; ch++) {\n"
    "        real *row = y + ch * g;\n"
    "        for (long t = 0; t < g; t++)\n"
    "            row[t] = (add ? row[t] : 0) + bias[ch];\n"
    "    }\n"
    "}\n";

static const char k_tuned_bias_set[] =
    "/* y[b, c, g] = bias[c] (+= when add), over a batch of blocks of c channels\n"
    " * times g grid points; the samples split among the threads. */\n"
    "static void bias_set(real *restrict y, const real *restrict bias, long batch, long c, long g, int add)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if ((double)batch * c * g >= PAR_WORK / 16 && omp_get_max_threads() > 1 && !omp_in_parallel()) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long n = 0; n < batch; n++)\n"
    "            bias_sample(y + n * c * g, bias, c, g, add);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long n = 0; n < batch; n++)\n"
    "        bias_sample(y + n * c * g, bias, c, g, add);\n"
    "}\n";

static const char k_tuned_bias_grad[] =
    "/* (channels among the threads, each summing the whole batch for its own) */\n"
    "static void bias_grad(real *restrict db, const real *restrict ybar, long batch, long c, long g)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "    if ((double)batch * c * g >= PAR_WORK && c > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {\n"
    "#pragma omp parallel for schedule(static)\n"
    "        for (long ch = 0; ch < c; ch++)\n"
    "            bias_grad_ch(db, ybar, batch, c, g, ch);\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    for (long ch = 0; ch < c; ch++)\n"
    "        bias_grad_ch(db, ybar, batch, c, g, ch);\n"
    "}\n";

/* tanh and sigmoid in float: through exp_vec, plain arithmetic that clang
 * vectorizes (a call to expf would keep the loop scalar); within 2 ulp of
 * the correctly rounded value wherever the result is a normal float
 * (tests/test_vexp.c). */
static const char k_exp_vec[] =
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
    "}\n";

static const char k_vexp_tanh[] =
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
    "}\n";

/* ---- plain kernels (--kernels=plain) -------------------------------------------- */

/* The call sites lay out their workspace by NB and pass PAR_WORK to OpenMP:
 * both stay; the tiles MR and KC do not exist here. */
static const char k_plain_sizes[] =
    "/* NB: the columns of C per call of mm_rows (the generated code lays out its\n"
    " * workspace by it); PAR_WORK: the multiply-adds below which a loop of the\n"
    " * generated code stays on one thread. */\n"
    "enum { NB = $NB, PAR_WORK = 1 << 17 };\n";

static const char k_plain_mm_grid[] =
    "/* C[m x n] += A[m x k] B[k x n] for the loop nests of grid arrows, where the\n"
    " * contraction index p and the column index j each stand for two loop\n"
    " * indices, p = (p1, p0) with p0 < kn and j = (j1, j0) with j0 < nn (for\n"
    " * instance j = (sample, position)):\n"
    " *   A(i, p) = a[i * ai + p1 * ap1 + p0 * ap0]\n"
    " *   B(p, j) = b[p1 * bp1 + p0 * bp0 + j1 * bj1 + j0 * bj0]\n"
    " *           (bs[p1][p0 * bp0 + j1 * bj1 + j0 * bj0] when bs is given)\n"
    " *   C(i, j) = c[i * ci + j1 * cj1 + j0 * cj0]\n"
    " * work, the tuned kernel's scratch for its panels, is not needed here. */\n"
    "static void mm_grid(long m, long n, long k, long kn, long nn,\n"
    "                    const real *restrict a, long ai, long ap1, long ap0,\n"
    "                    const real *restrict b, const real *const *bs, long bp1, long bp0,\n"
    "                    long bj1, long bj0,\n"
    "                    real *restrict c, long ci, long cj1, long cj0, real *restrict work)\n"
    "{\n"
    "    (void)work;\n"
    "    for (long i = 0; i < m; i++)\n"
    "        for (long j = 0; j < n; j++) {\n"
    "            long j1 = j / nn, j0 = j % nn;\n"
    "            real sum = 0;\n"
    "            for (long p = 0; p < k; p++) {\n"
    "                long p1 = p / kn, p0 = p % kn;\n"
    "                const real *row = bs ? bs[p1] : b + p1 * bp1;\n"
    "                sum += a[i * ai + p1 * ap1 + p0 * ap0] * row[p0 * bp0 + j1 * bj1 + j0 * bj0];\n"
    "            }\n"
    "            c[i * ci + j1 * cj1 + j0 * cj0] += sum;\n"
    "        }\n"
    "}\n";

static const char k_plain_mm_taps[] =
    "/* C[m x n] = sum over taps t and channels q of A(i, (t, q)) B((t, q), j), set\n"
    " * (not added): a convolution whose patch matrix is read in place from a\n"
    " * zero-padded input, row (t, q) the window of channel q at tap t:\n"
    " *   A(i, (t, q)) = a[(t * ch + q) * m + i]\n"
    " *   B((t, q), j) = b[q * bcs + tap_at[t] + j], zero unless tap_on[2 t] <= j < tap_on[2 t + 1]\n"
    " *   C(i, j) = c[i * ldc + j] */\n"
    "static void mm_taps(long m, long n, long taps, long ch, const real *restrict a,\n"
    "                    const real *restrict b, const long *restrict tap_at,\n"
    "                    const long *restrict tap_on, long bcs, real *restrict c, long ldc)\n"
    "{\n"
    "    for (long i = 0; i < m; i++)\n"
    "        for (long j = 0; j < n; j++) {\n"
    "            real sum = 0;\n"
    "            for (long t = 0; t < taps; t++)\n"
    "                if (tap_on[2 * t] <= j && j < tap_on[2 * t + 1])\n"
    "                    for (long q = 0; q < ch; q++)\n"
    "                        sum += a[(t * ch + q) * m + i] * b[q * bcs + tap_at[t] + j];\n"
    "            c[i * ldc + j] = sum;\n"
    "        }\n"
    "}\n";

static const char k_plain_mm_rows[] =
    "/* C[m x cols] += A[m x k] P[k x cols] for the kernel gradient of a\n"
    " * convolution: row i = (t, q) of A, t = i / ch and q = i % ch, is the window\n"
    " * of channel q at tap t of a zero-padded input:\n"
    " *   A(i, p) = a[q * acs + tap_at[t] + p], zero unless tap_on[2 t] <= p < tap_on[2 t + 1]\n"
    " *   P(p, s) = panel[p * ldp + s]\n"
    " *   C(i, s) = c[i * ldc + s] */\n"
    "static void mm_rows(long m, long k, long ch, const real *restrict a, const long *restrict tap_at,\n"
    "                    const long *restrict tap_on, long acs, const real *restrict panel, long ldp,\n"
    "                    long cols, real *restrict c, long ldc)\n"
    "{\n"
    "    for (long i = 0; i < m; i++) {\n"
    "        long t = i / ch, q = i % ch;\n"
    "        long p0 = tap_on[2 * t] > 0 ? tap_on[2 * t] : 0, p1 = tap_on[2 * t + 1] < k ? tap_on[2 * t + 1] : k;\n"
    "        for (long s = 0; s < cols; s++) {\n"
    "            real sum = 0;\n"
    "            for (long p = p0; p < p1; p++)\n"
    "                sum += a[q * acs + tap_at[t] + p] * panel[p * ldp + s];\n"
    "            c[i * ldc + s] += sum;\n"
    "        }\n"
    "    }\n"
    "}\n";

static const char k_plain_mm_acc[] =
    "/* C[m x n] += A[m x k] B[k x n]:\n"
    " *   A(i, p) = a[i * ars + p * acs]   (ars, acs) = (lda, 1) reads A, (1, lda) A^T\n"
    " *   B(p, j) = b[p * ldb + j]\n"
    " *   C(i, j) = c[i * ldc + j] */\n"
    "static void mm_acc(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                   const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    for (long i = 0; i < m; i++)\n"
    "        for (long j = 0; j < n; j++) {\n"
    "            real sum = 0;\n"
    "            for (long p = 0; p < k; p++)\n"
    "                sum += a[i * ars + p * acs] * b[p * ldb + j];\n"
    "            c[i * ldc + j] += sum;\n"
    "        }\n"
    "}\n";

static const char k_plain_mm_set[] =
    "/* C[m x n] = A[m x k] B[k x n]: C = 0, then mm_acc */\n"
    "static void mm_set(long m, long n, long k, const real *restrict a, long ars, long acs,\n"
    "                   const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    for (long i = 0; i < m; i++)\n"
    "        for (long j = 0; j < n; j++)\n"
    "            c[i * ldc + j] = 0;\n"
    "    mm_acc(m, n, k, a, ars, acs, b, ldb, c, ldc);\n"
    "}\n";

static const char k_plain_mm_nt[] =
    "/* C[m x n] += A[m x k] B[n x k]^T (the dual of a dense arrow reads W^T):\n"
    " *   A(i, p) = a[i * lda + p]\n"
    " *   B^T(p, j) = b[j * ldb + p]\n"
    " *   C(i, j) = c[i * ldc + j] */\n"
    "static void mm_nt(long m, long n, long k, const real *restrict a, long lda,\n"
    "                  const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    for (long i = 0; i < m; i++)\n"
    "        for (long j = 0; j < n; j++) {\n"
    "            real sum = 0;\n"
    "            for (long p = 0; p < k; p++)\n"
    "                sum += a[i * lda + p] * b[j * ldb + p];\n"
    "            c[i * ldc + j] += sum;\n"
    "        }\n"
    "}\n";

static const char k_plain_mm_nt_set[] =
    "/* C[m x n] = A[m x k] B[n x k]^T: C = 0, then mm_nt */\n"
    "static void mm_nt_set(long m, long n, long k, const real *restrict a, long lda,\n"
    "                      const real *restrict b, long ldb, real *restrict c, long ldc)\n"
    "{\n"
    "    for (long i = 0; i < m; i++)\n"
    "        for (long j = 0; j < n; j++)\n"
    "            c[i * ldc + j] = 0;\n"
    "    mm_nt(m, n, k, a, lda, b, ldb, c, ldc);\n"
    "}\n";

static const char k_plain_bias_grad[] =
    "/* dbias[c] += sum over batch and grid of ybar[b, c, g] */\n"
    "static void bias_grad(real *restrict db, const real *restrict ybar, long batch, long c, long g)\n"
    "{\n"
    "    for (long n = 0; n < batch; n++)\n"
    "        for (long ch = 0; ch < c; ch++)\n"
    "            for (long q = 0; q < g; q++)\n"
    "                db[ch] += ybar[(n * c + ch) * g + q];\n"
    "}\n";

/* ---- in both ------------------------------------------------------------------ */

static const char k_banner_kernels[] =
    "/* ---- kernels ------------------------------------------------------------ */\n";

static const char k_plain_split_groups[] =
    "/* The plain kernels run the groups of a windowed product in order on one\n"
    " * thread. */\n"
    "static int split_groups(long groups, double macs)\n"
    "{\n"
    "    (void)groups;\n"
    "    (void)macs;\n"
    "    return 0;\n"
    "}\n";

static const char k_plain_bias_set[] =
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
    "}\n";

static const char k_short_loop[] =
    "/* A loop of fewer iterations than a vector holds (a chunk of a few steps of\n"
    " * time, a short row): clang is told not to vectorize it. Its vector code\n"
    " * could never run, and on a small machine the size of that code costs\n"
    " * the instruction cache more than the loops themselves cost. */\n"
    "#if defined(__clang__)\n"
    "#define SHORT_LOOP _Pragma(\"clang loop vectorize(disable) interleave(disable)\")\n"
    "#else\n"
    "#define SHORT_LOOP\n"
    "#endif\n";

static const char k_masked_tail[] =
    "/* A row of an activation a few vectors long whose length is not a multiple\n"
    " * of one (a 28-wide grid: 16 + 12): its last vector is masked, not left\n"
    " * to scalar code, which would take most of the row's time (an exp per\n"
    " * element). Only where masks are cheap (AVX-512). */\n"
    "#if defined(__clang__) && defined(__AVX512F__)\n"
    "#define MASKED_TAIL _Pragma(\"clang loop vectorize_predicate(enable)\")\n"
    "#else\n"
    "#define MASKED_TAIL\n"
    "#endif\n";

static const char k_o_first[] =
    "/* The output positions o of a grid arrow whose input position o * s + off\n"
    " * lies in [lo, hi): from o_first(off, s, lo) to o_end(off, s, hi, out). */\n"
    "static inline long o_first(long off, long s, long lo)\n"
    "{\n"
    "    long d = lo - off;\n"
    "    return d <= 0 ? 0 : (d + s - 1) / s;\n"
    "}\n";

static const char k_o_end[] =
    "static inline long o_end(long off, long s, long hi, long out)\n"
    "{\n"
    "    long d = hi - off, e = d <= 0 ? 0 : (d - 1) / s + 1;\n"
    "    return e < out ? e : out;\n"
    "}\n";

static const char k_add_to[] =
    "static void add_to(real *restrict y, const real *restrict x, long n)\n"
    "{\n"
    "    for (long k = 0; k < n; k++)\n"
    "        y[k] += x[k];\n"
    "}\n";

static const char k_copy_plus[] =
    "/* y[0 .. n) = x[0 .. n) + b */\n"
    "static void copy_plus(real *restrict y, const real *restrict x, real b, long n)\n"
    "{\n"
    "    for (long k = 0; k < n; k++)\n"
    "        y[k] = x[k] + b;\n"
    "}\n";

static const char k_banner_acts[] =
    "/* ---- activations sigma and their derivatives sigma'(y), given z = sigma(y) */\n";

static const char k_d_gelu[] =
    "static inline real d_gelu(real y, real z)\n"
    "{\n"
    "    (void)z;\n"
    "    return (real)0.5 * (1 + erf$f(y * (real)0.70710678118654752))\n"
    "           + y * exp$f((real)-0.5 * y * y) * (real)0.39894228040143268;\n"
    "}\n";

/* softmax over the channels, which is not pointwise: at each grid point g of
 * [g0, g1) of every sample, the C values y[c * G + g]. */
static const char k_softmax_ch[] =
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
    "                sum += zg[c * G] = exp$f(yg[c * G] - mx);\n"
    "            for (long c = 0; c < C; c++)\n"
    "                zg[c * G] /= sum;\n"
    "        }\n"
    "}\n";

static const char k_softmax_jvp[] =
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
    "}\n";

static const char k_softmax_gate[] =
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
    "}\n";

/* ---- the table ------------------------------------------------------------------ */

/* Which preludes a kernel belongs to. */
typedef enum KernelSet {
  KS_ALL,   /* every prelude */
  KS_TUNED, /* --kernels=tuned */
  KS_PLAIN, /* --kernels=plain */
  KS_VEXP,  /* tuned float: exp_vec, and tanh and sigmoid through it */
  KS_LIBM,  /* every other prelude: tanh and exp from libm */
} KernelSet;

/* One kernel: a function (with the comment above it), the enum of sizes, or
 * a banner (no name: always written). */
typedef struct Kernel {
  const char *names; /* what it defines, space-separated: the function, or the enum's constants */
  const char *calls; /* the kernels (or constants) its text uses, space-separated */
  KernelSet set;
  const char *text;  /* C, with $ parameters; written followed by a blank line */
} Kernel;

/* In the order they are written (a kernel's callees come before it; the
 * writer checks). Where a kernel has a tuned and a plain text they sit side
 * by side. */
static const Kernel kernels[] = {
    {"", "", KS_ALL, k_banner_kernels},
    {"MR NB KC TR PAR_WORK", "", KS_TUNED, k_tuned_sizes},
    {"NB PAR_WORK", "", KS_PLAIN, k_plain_sizes},
    {"mm_micro", "MR NB", KS_TUNED, k_mm_micro},
    {"mm_micro_half", "MR NB", KS_TUNED, k_mm_micro_half},
    {"mm_gen_seq", "MR NB KC TR mm_micro mm_micro_half", KS_TUNED, k_mm_gen_seq},
    {"mm_gen", "MR PAR_WORK mm_gen_seq", KS_TUNED, k_mm_gen},
    {"mm_grid", "MR NB KC mm_micro", KS_TUNED, k_tuned_mm_grid},
    {"mm_grid", "", KS_PLAIN, k_plain_mm_grid},
    {"taps_micro", "MR NB", KS_TUNED, k_taps_micro},
    {"taps_micro6", "NB", KS_TUNED, k_taps_micro},
    {"taps_cols", "MR KC taps_micro taps_micro6", KS_TUNED, k_taps_cols},
    {"mm_taps", "NB PAR_WORK taps_cols", KS_TUNED, k_tuned_mm_taps},
    {"mm_taps", "", KS_PLAIN, k_plain_mm_taps},
    {"taps_row", "NB KC", KS_TUNED, k_taps_row},
    {"mm_taps_row", "NB PAR_WORK taps_row", KS_TUNED, k_tuned_mm_taps_row},
    {"mm_taps_row", "mm_taps", KS_PLAIN, k_plain_mm_taps_row},
    {"rows_micro", "NB", KS_TUNED, k_rows_micro},
    {"rows_narrow", "MR NB", KS_TUNED, k_rows_narrow},
    {"rows_block", "MR rows_micro rows_narrow", KS_TUNED, k_rows_block},
    {"mm_rows", "MR NB PAR_WORK rows_block", KS_TUNED, k_tuned_mm_rows},
    {"mm_rows", "NB", KS_PLAIN, k_plain_mm_rows},
    {"mm_acc", "mm_gen", KS_TUNED, k_tuned_mm_acc},
    {"mm_acc", "", KS_PLAIN, k_plain_mm_acc},
    {"mm_set", "mm_gen", KS_TUNED, k_tuned_mm_set},
    {"mm_set", "mm_acc", KS_PLAIN, k_plain_mm_set},
    {"mm_nt", "mm_gen", KS_TUNED, k_tuned_mm_nt},
    {"mm_nt", "", KS_PLAIN, k_plain_mm_nt},
    {"mm_nt_set", "mm_gen", KS_TUNED, k_tuned_mm_nt_set},
    {"mm_nt_set", "mm_nt", KS_PLAIN, k_plain_mm_nt_set},
    {"split_groups", "PAR_WORK", KS_TUNED, k_tuned_split_groups},
    {"split_groups", "", KS_PLAIN, k_plain_split_groups},
    {"bias_sample", "", KS_TUNED, k_bias_sample},
    {"bias_set", "PAR_WORK bias_sample", KS_TUNED, k_tuned_bias_set},
    {"bias_set", "", KS_PLAIN, k_plain_bias_set},
    {"bias_grad_ch", "NB", KS_TUNED, k_bias_grad_ch},
    {"bias_grad", "PAR_WORK bias_grad_ch", KS_TUNED, k_tuned_bias_grad},
    {"bias_grad", "", KS_PLAIN, k_plain_bias_grad},
    {"SHORT_LOOP", "", KS_ALL, k_short_loop},
    {"MASKED_TAIL", "", KS_ALL, k_masked_tail},
    {"o_first", "", KS_ALL, k_o_first},
    {"o_end", "", KS_ALL, k_o_end},
    {"add_to", "", KS_ALL, k_add_to},
    {"copy_plus", "", KS_ALL, k_copy_plus},
    {"", "", KS_ALL, k_banner_acts},
    {"act_tanh", "", KS_LIBM, "static inline real act_tanh(real y) { return tanh$f(y); }\n"},
    {"act_sigmoid", "", KS_LIBM, "static inline real act_sigmoid(real y) { return 1 / (1 + exp$f(-y)); }\n"},
    {"exp_vec", "", KS_VEXP, k_exp_vec},
    {"act_tanh", "exp_vec", KS_VEXP, k_vexp_tanh},
    {"act_sigmoid", "exp_vec", KS_VEXP, "static inline real act_sigmoid(real y) { return 1 / (1 + exp_vec(-y)); }\n"},
    {"act_relu", "", KS_ALL, "static inline real act_relu(real y) { return y > 0 ? y : 0; }\n"},
    {"act_leaky_relu", "", KS_ALL,
     "static inline real act_leaky_relu(real y, real alpha) { return y > 0 ? y : alpha * y; }\n"},
    {"act_gelu", "", KS_ALL,
     "static inline real act_gelu(real y) { return (real)0.5 * y * (1 + erf$f(y * (real)0.70710678118654752)); }\n"},
    {"act_softplus", "", KS_ALL,
     "static inline real act_softplus(real y) { return (y > 0 ? y : 0) + log1p$f(exp$f(-fabs$f(y))); }\n"},
    {"act_sin", "", KS_ALL, "static inline real act_sin(real y) { return sin$f(y); }\n"},
    {"d_tanh", "", KS_ALL, "static inline real d_tanh(real y, real z) { (void)y; return 1 - z * z; }\n"},
    {"d_sigmoid", "", KS_ALL, "static inline real d_sigmoid(real y, real z) { (void)y; return z * (1 - z); }\n"},
    {"d_relu", "", KS_ALL, "static inline real d_relu(real y, real z) { (void)z; return y > 0 ? 1 : 0; }\n"},
    {"d_leaky_relu", "", KS_ALL,
     "static inline real d_leaky_relu(real y, real z, real alpha) { (void)z; return y > 0 ? 1 : alpha; }\n"},
    {"d_gelu", "", KS_ALL, k_d_gelu},
    {"d_softplus", "act_sigmoid", KS_ALL,
     "static inline real d_softplus(real y, real z) { (void)z; return act_sigmoid(y); }\n"},
    {"d_sin", "", KS_ALL, "static inline real d_sin(real y, real z) { (void)z; return cos$f(y); }\n"},
    {"softmax_ch", "", KS_ALL, k_softmax_ch},
    {"softmax_jvp", "", KS_ALL, k_softmax_jvp},
    {"softmax_gate", "", KS_ALL, k_softmax_gate},
};

enum { NKERNELS = sizeof kernels / sizeof *kernels };

/* ---- writing the prelude --------------------------------------------------------- */

static bool in_set(KernelSet s, bool plain, bool f32) {
  switch (s) {
  case KS_ALL:
    return true;
  case KS_TUNED:
    return !plain;
  case KS_PLAIN:
    return plain;
  case KS_VEXP:
    return !plain && f32;
  case KS_LIBM:
    return plain || !f32;
  }
  return false;
}

static bool is_word(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

/* Calls f(ctx, word, len) for each word of the space-separated list. */
static void each_name(const char *list, void (*f)(void *ctx, const char *w, size_t n), void *ctx) {
  for (const char *p = list; *p;) {
    size_t n = strcspn(p, " ");
    if (n)
      f(ctx, p, n);
    p += n + (p[n] == ' ');
  }
}

/* The prelude being chosen: which kernels of the table are in its set, the
 * kernel that defines each name, which are needed. */
typedef struct Prelude {
  Arena *a;
  StrMap by_name; /* name -> index + 1 into kernels[], among those in the set */
  bool in[NKERNELS], need[NKERNELS];
  int at;         /* the kernel being registered */
} Prelude;

static void put_name(void *ctx, const char *w, size_t n) {
  Prelude *p = ctx;
  strmap_put(p->a, &p->by_name, arena_strndup(p->a, w, n), (void *)(intptr_t)(p->at + 1));
}

/* The kernel of the set defining the word w[0 .. n), or -1. */
static int lookup(Prelude *p, const char *w, size_t n) {
  char key[32];
  if (n >= sizeof key)
    return -1;
  memcpy(key, w, n);
  key[n] = '\0';
  return (int)(intptr_t)strmap_get(&p->by_name, key) - 1;
}

static void need(Prelude *p, int k);

static void need_name(void *ctx, const char *w, size_t n) {
  Prelude *p = ctx;
  int k = lookup(p, w, n);
  assert(k >= 0 && "a kernel calls a name no kernel of its set defines");
  need(p, k);
}

/* Marks kernel k and what it calls, transitively. */
static void need(Prelude *p, int k) {
  if (p->need[k])
    return;
  p->need[k] = true;
  each_name(kernels[k].calls, need_name, p);
}

/* Whether every kernel that kernel k calls is already written. */
static bool callees_written(Prelude *p, int k, const bool *written) {
  bool ok = true;
  const char *list = kernels[k].calls;
  for (const char *w = list; *w && ok;) {
    size_t n = strcspn(w, " ");
    if (n)
      ok = written[lookup(p, w, n)];
    w += n + (w[n] == ' ');
  }
  return ok;
}

/* The tiles that do not follow the target (emit_grid_work sizes mm_grid's
 * panels by them). */
enum { TILE_MR = 4, TILE_KC = 256 };

/* A parameter of the texts: $name stands for value. */
typedef struct Param {
  const char *name, *value;
} Param;

/* Writes text with each $NAME replaced by its value. */
static void expand(StrBuf *c, const char *text, const Param *params, int np) {
  for (const char *s = text; *s;) {
    size_t n = strcspn(s, "$");
    sb_printf(c, "%.*s", (int)n, s);
    if (!s[n])
      break;
    s += n + 1;
    for (n = 0; is_word(s[n]); n++)
      ;
    int k = 0;
    while (k < np && !(strlen(params[k].name) == n && strncmp(s, params[k].name, n) == 0))
      k++;
    assert(k < np && "a kernel's text names an unknown $ parameter");
    sb_puts(c, params[k].value);
    s += n;
  }
}

long emit_nb(const EmitOptions *o) { return 2 * (o->vec_bytes ? o->vec_bytes : 64) / (o->f32 ? 4 : 8); }

const char *emit_short(const Emit *e, long n) {
  return n < emit_nb(e->o) / 2 ? "SHORT_LOOP " : "";
}

/* Whether every function the statement calls vectorizes: the arithmetic
 * activations always, tanh and sigmoid (and d_softplus through sigmoid)
 * where they run on exp_vec; libm's erf, log1p, sin, or exp in double, never
 * (clang would then warn that it could not do what MASKED_TAIL asks). */
static bool calls_vectorize(const Emit *e, const char *stmt) {
  /* space-separated, each name between spaces */
  static const char always[] = " act_relu act_leaky_relu d_tanh d_sigmoid d_relu d_leaky_relu ";
  static const char on_exp_vec[] = " act_tanh act_sigmoid d_softplus ";
  bool vexp = in_set(KS_VEXP, e->o->plain_kernels, e->o->f32);
  for (const char *p = strchr(stmt, '('); p; p = strchr(p + 1, '(')) {
    const char *q = p;
    while (q > stmt && is_word(q[-1]))
      q--;
    if (q == p) /* a parenthesis or a cast, not a call */
      continue;
    char name[64];
    snprintf(name, sizeof name, " %.*s ", (int)(p - q), q);
    if (!strstr(always, name) && !(vexp && strstr(on_exp_vec, name)))
      return false;
  }
  return true;
}

const char *emit_masked(const Emit *e, long n, const char *stmt) {
  long v = emit_nb(e->o) / 2;
  return n % v && n < 8 * v && calls_vectorize(e, stmt) ? "MASKED_TAIL " : "";
}

long emit_grid_work(long k, long m, long nb) {
  long kk = k < TILE_KC ? k : TILE_KC, mm = (m + TILE_MR - 1) / TILE_MR * TILE_MR;
  return kk * (nb + mm) + TILE_MR * nb;
}

void emit_kernels(StrBuf *c, const EmitOptions *o, const char *body) {
  bool plain = o->plain_kernels, f32 = o->f32;
  /* two vectors of columns per row: 32 floats with AVX-512, 16 with AVX2 */
  int vec = o->vec_bytes ? o->vec_bytes : 64;
  long nb = emit_nb(o);
  /* rows of W^T that mm_gen_seq transposes at a time: what clang, which
   * turns the copy into shuffles, did fastest for each target (a 784 x 128
   * W: 12 us for 8 rows in f32 with AVX-512, 28 us for a row at a time) */
  long tr = f32 ? (vec == 16 ? 1 : 8) : (vec == 64 ? 2 : 1);
  char nbs[24], mrs[24], kcs[24], trs[24];
  snprintf(nbs, sizeof nbs, "%ld", nb);
  snprintf(mrs, sizeof mrs, "%d", TILE_MR);
  snprintf(kcs, sizeof kcs, "%d", TILE_KC);
  snprintf(trs, sizeof trs, "%ld", tr);
  const Param params[] = {{"NB", nbs}, {"MR", mrs}, {"KC", kcs}, {"TR", trs}, {"f", f32 ? "f" : ""},
                          {"SMALL_STACK", o->standalone ? "1" : "0"}};
  Prelude p = {.a = arena_new()};
  for (p.at = 0; p.at < NKERNELS; p.at++) {
    p.in[p.at] = in_set(kernels[p.at].set, plain, f32);
    if (p.in[p.at])
      each_name(kernels[p.at].names, put_name, &p);
  }
  /* the body grows with the machine: it is read once, word by word */
  for (const char *w = body; *w;) {
    size_t n = 0;
    while (is_word(w[n]))
      n++;
    int k = n ? lookup(&p, w, n) : -1;
    if (k >= 0)
      need(&p, k);
    w += n ? n : 1;
  }
  for (int k = 0; k < NKERNELS; k++)
    p.need[k] |= p.in[k] && !kernels[k].names[0]; /* banners */
  bool written[NKERNELS] = {false};
  for (int k = 0; k < NKERNELS; k++)
    if (p.need[k]) {
      assert(callees_written(&p, k, written) && "the table lists a kernel before what it calls");
      /* a text that serves several kernels: $NAME the kernel's, $ROWS the
       * digits that end it (taps_micro6: 6), or MR */
      const char *name = kernels[k].names;
      size_t len = strcspn(name, " "), d = len;
      while (d > 0 && name[d - 1] >= '0' && name[d - 1] <= '9')
        d--;
      Param own[sizeof params / sizeof params[0] + 2];
      int np = (int)(sizeof params / sizeof params[0]);
      memcpy(own, params, sizeof params);
      own[np++] = (Param){"NAME", arena_printf(p.a, "%.*s", (int)len, name)};
      own[np++] = (Param){"ROWS", d < len ? arena_printf(p.a, "%.*s", (int)(len - d), name + d) : "MR"};
      expand(c, kernels[k].text, own, np);
      sb_puts(c, "\n");
      written[k] = true;
    }
  arena_free(p.a);
}
