/* json.c — the two JSON pieces `info --json` needs: strings and shapes. */
#include "rt.h"

/* Escapes per RFC 8259: quote, backslash and control characters; other
 * bytes (UTF-8 included) pass through unchanged. */
void mach_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    case '\b': fputs("\\b", f); break;
    case '\f': fputs("\\f", f); break;
    default:
      if (*p < 0x20)
        fprintf(f, "\\u%04x", *p);
      else
        fputc(*p, f);
    }
  }
  fputc('"', f);
}

void mach_json_shape(FILE *f, int rank, const int *shape) {
  fputc('[', f);
  for (int i = 0; i < rank; i++)
    fprintf(f, "%s%d", i ? ", " : "", shape[i]);
  fputc(']', f);
}
