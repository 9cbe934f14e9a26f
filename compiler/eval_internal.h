/* eval_internal.h — the loaded program, shared by load.c and eval.c. */
#ifndef EVAL_INTERNAL_H
#define EVAL_INTERNAL_H

#include "eval_value.h"

struct Program {
  Arena *arena;
  Diag *diag;
  const char *main_path;
  int main_file;           /* Diag file index of the main file */
  const char **stdlib_dirs;
  int nstdlib;
  PtrVec loaded;           /* real paths already read (each file once) */
  PtrVec machines;         /* Ast* AST_MACHINE from every file */
  StrMap *machine_map;     /* the same by name */
};

const Ast *prog_find_machine(const Program *p, const char *name);

#endif
