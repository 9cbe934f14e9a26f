/* test_vexp.c — the f32 activations the generated code computes without
 * libm: exp_vec, and through it sigmoid and tanh, against double-precision
 * libm rounded to float, within 2 ulp over the whole range where the result
 * is a normal float (below FLT_MIN they flush to 0; every 97th float, and every float of [-1, 1] near 0.4,
 * where tanh switches from its series). The functions are taken from the
 * C that machc writes for an f32 machine using both activations. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(vexp, .fini = e2e_cleanup, .timeout = 120);

static const char model[] = "machine acts {\n"
                            "    input  x : 2\n"
                            "    block  s : 2 = sigmoid(dense(x))\n"
                            "    output t : 2 = tanh(dense(s))\n"
                            "}\n";

/* Appended to the generated C: walks the floats, prints the worst ulp of each
 * function and where. */
static const char checker[] =
    "\n#include <stdio.h>\n"
    "static double ulps(float got, double want) {\n"
    "    float w = (float)want;\n"
    "    if (got == w) return 0;\n"
    "    int32_t a, b; memcpy(&a, &got, 4); memcpy(&b, &w, 4);\n"
    "    return a > b ? (double)a - b : (double)b - a;\n"
    "}\n"
    "int main(void) {\n"
    "    double worst[3] = {0, 0, 0}; float at[3] = {0, 0, 0};\n"
    "    for (uint32_t bits = 0; bits < 0xff800000u; bits += 97) {\n"
    "        for (int sign = 0; sign < 2; sign++) {\n"
    "            uint32_t u = bits | (sign ? 0x80000000u : 0); float x; memcpy(&x, &u, 4);\n"
    "            double e = exp((double)x), u0 = 0, u1 = 0, u2 = 0;\n"
    "            if (e >= 1.17549435e-38 && e <= 3.40282347e38) u0 = ulps(exp_vec(x), e);\n"
    "            double sg = 1 / (1 + exp(-(double)x));\n"
    "            if (sg >= 1.17549435e-38) u1 = ulps(act_sigmoid(x), sg);\n"
    "            if (fabs((double)x) > 1e-30) u2 = ulps(act_tanh(x), tanh((double)x));\n"
    "            double d[3] = {u0, u1, u2};\n"
    "            for (int k = 0; k < 3; k++) if (d[k] > worst[k]) { worst[k] = d[k]; at[k] = x; }\n"
    "        }\n"
    "        if (bits == 0x3e800000u) /* [0.25, 0.6]: every float, across tanh's switch */\n"
    "            for (uint32_t v = bits; v < 0x3f19999au; v++) {\n"
    "                float x; memcpy(&x, &v, 4);\n"
    "                double d = ulps(act_tanh(x), tanh((double)x));\n"
    "                if (d > worst[2]) { worst[2] = d; at[2] = x; }\n"
    "            }\n"
    "    }\n"
    "    printf(\"exp %g at %.9g\\nsigmoid %g at %.9g\\ntanh %g at %.9g\\n\", worst[0], at[0], worst[1], at[1],\n"
    "           worst[2], at[2]);\n"
    "    return 0;\n"
    "}\n";

Test(vexp, f32_activations_within_2_ulp_of_libm) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "acts.mach"), model);
  E2eRun r = e2e_runl(dir, 60, e2e_machc(), "--standalone", "--dtype", "f32", "acts.mach", "-o", "acts.c", NULL);
  e2e_check_ok(&r, "machc --standalone");
  e2e_run_free(&r);
  char *c = e2e_read_file(e2e_path(dir, "acts.c"), NULL);
  cr_assert(c && strstr(c, "exp_vec"), "the f32 code does not use exp_vec");
  char *all = e2e_fmt("%s%s", c, checker);
  e2e_write_text(e2e_path(dir, "check.c"), all);
  free(c);
  r = e2e_runl(dir, 60, "cc", "-O2", "-std=c99", "-o", "check", "check.c", "-lm", NULL);
  e2e_check_ok(&r, "cc check.c");
  e2e_run_free(&r);
  r = e2e_runl(dir, 120, e2e_path(dir, "check"), NULL);
  e2e_check_ok(&r, "check");
  double w[3];
  cr_assert_eq(sscanf(r.out, "exp %lf at %*f\nsigmoid %lf at %*f\ntanh %lf", &w[0], &w[1], &w[2]), 3, "%s", r.out);
  for (int k = 0; k < 3; k++)
    cr_assert_leq(w[k], 2.0, "%s", r.out);
  cr_assert_gt(w[0] + w[1] + w[2], 0, "nothing measured: %s", r.out);
  e2e_run_free(&r);
}
