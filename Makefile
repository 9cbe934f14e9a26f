# machc — build, test, demo, bench, install. No other build system.
#
#   make            build bin/machc and the runtime libraries
#   make test       the fast tier of the test suite (Criterion, tests/*.c; about 20 s);
#                   SANITIZE=1 (here and below) for ASan + UBSan
#   make test-long  the long tier (tests/long/*.c: standalone C and cross builds, MPI,
#                   threads, --march tiles, the f32 exp sweep, 100,000-block compiles,
#                   bench; about a minute and a half)
#   make test-examples  the example trainings (poly, sine, waves, examples/embed; about a minute)
#   make test-all   all three; CI (.ci/run) runs them, and the first two under SANITIZE=1
#   make deps-cross the cross tools of the embedded tests (make test-long runs it)
#   make demo       compile examples/poly.mach, train it, print results
#   make example-fmnist    a CNN on Debian's Fashion-MNIST IDX files (minutes)
#   make example-sunspots  one-year-ahead sunspot forecasts (about a minute)
#   make bench      forward/backward timings of the benchmark configurations, beside
#                   PyTorch's when python3-torch is installed (PATTERN=conv2d selects,
#                   THREADS=N); make bench-check: machc and PyTorch agree;
#                   make bench-deps: python3-torch, numpy and OpenBLAS for both;
#                   make bench-whole: whole `train` and `forward` processes over a
#                   200 MB .npy beside a PyTorch script (long: WHOLE_MB=20 shrinks it)
#   make fuzz       libFuzzer over the compiler and the runtime readers,
#                   FUZZ_SECONDS (300) per target (not part of `make test`)
#   make diagrams   docs/img/*.svg, the depth diagrams in README.md (Graphviz)
#   make install    PREFIX=/usr/local
#
# Missing Debian packages are installed when run as root or with sudo;
# otherwise the one apt-get command to run is printed.

CC      ?= cc
PREFIX  ?= /usr/local
DEB_PKGS = re2c bison clang libcriterion-dev zlib1g-dev make openmpi-bin libopenmpi-dev libomp-dev

ifeq ($(SANITIZE),1)
BUILD   := build/san
BIN     := $(BUILD)/bin
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1
else
BUILD   := build
BIN     := bin
SANFLAGS :=
OPT     := -O2
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
CFLAGS_ALL := -std=c11 -D_GNU_SOURCE $(OPT) -g $(WARN) $(SANFLAGS) $(CFLAGS)
ROOT    := $(abspath .)
LIBDIR  := $(abspath $(BUILD)/lib)

GEN     := $(BUILD)/gen
OBJ     := $(BUILD)/obj
MACHC   := $(BIN)/machc

COMPILER_SRCS := $(wildcard compiler/*.c)
COMPILER_OBJS := $(patsubst compiler/%.c,$(OBJ)/compiler/%.o,$(COMPILER_SRCS)) \
                 $(OBJ)/gen/lexer.o $(OBJ)/gen/parser.o
# Everything but main(), for the unit tests.
LIB_OBJS := $(filter-out $(OBJ)/compiler/main.o,$(COMPILER_OBJS))

RUNTIME_SRCS := $(wildcard runtime/*.c)
RT32_OBJS := $(patsubst runtime/%.c,$(OBJ)/rt32/%.o,$(RUNTIME_SRCS))
RT64_OBJS := $(patsubst runtime/%.c,$(OBJ)/rt64/%.o,$(RUNTIME_SRCS))
RT_LIBS  := $(BUILD)/lib/libmachrt_f32.a $(BUILD)/lib/libmachrt_f64.a
# machc --mpi links these: the same runtime with dist.c built against Open MPI.
RT_MPI_LIBS := $(BUILD)/lib/libmachrt_mpi_f32.a $(BUILD)/lib/libmachrt_mpi_f64.a
# Open MPI's flags, asked when a recipe runs (after deps has installed it).
MPI_CFLAGS = $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   = $(shell mpicc --showme:link 2>/dev/null)

# Two tiers: `make test` runs tests/*.c (a new test goes there unless it
# takes seconds); `make test-long` the slow suites in tests/long/.
TEST_SRCS := $(wildcard tests/*.c)
TEST_BIN  := $(BUILD)/tests/machc_tests
LONG_TEST_SRCS := $(wildcard tests/long/*.c) tests/e2e_util.c
LONG_TEST_BIN  := $(BUILD)/tests/machc_long_tests
# The example trainings: slow, so a binary and a target of their own.
EXAMPLE_TEST_SRCS := $(wildcard tests/examples/*.c) tests/e2e_util.c tests/e2e_machines.c
EXAMPLE_TEST_BIN  := $(BUILD)/tests/machc_examples

.PHONY: example-fmnist example-sunspots
.PHONY: all deps deps-cross test test-long test-examples test-all demo bench fuzz diagrams install clean
all: deps $(MACHC) $(RT_LIBS) $(RT_MPI_LIBS)

# --- Debian packages ---------------------------------------------------------
deps: $(BUILD)/.deps-ok
$(BUILD)/.deps-ok:
	@missing=""; \
	command -v re2c  >/dev/null 2>&1 || missing="$$missing re2c"; \
	command -v bison >/dev/null 2>&1 || missing="$$missing bison"; \
	command -v clang >/dev/null 2>&1 || missing="$$missing clang"; \
	test -f /usr/include/criterion/criterion.h || missing="$$missing libcriterion-dev"; \
	test -f /usr/include/zlib.h || missing="$$missing zlib1g-dev"; \
	command -v mpirun >/dev/null 2>&1 || missing="$$missing openmpi-bin"; \
	echo '#include <mpi.h>' | mpicc -x c -E - >/dev/null 2>&1 || missing="$$missing libopenmpi-dev"; \
	echo 'int main(void){return 0;}' | clang -fopenmp -x c - -o /dev/null 2>/dev/null || \
	  missing="$$missing libomp-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "machc: missing Debian packages:$$missing"; \
	       echo "run:  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi; \
	  echo "machc: installing$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi
	@mkdir -p $(BUILD) && touch $@

# The cross tools of the embedded tests (tests/long/test_embed.c, suite embed_cross):
# installed when we can; otherwise those tests skip and say why.
CROSS_PKGS = gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-arm-linux-gnueabihf qemu-user
deps-cross:
	@missing=""; \
	command -v arm-none-eabi-gcc >/dev/null 2>&1 || missing="$$missing gcc-arm-none-eabi"; \
	test -f /usr/lib/arm-none-eabi/newlib/libc.a || test -f /usr/lib/arm-none-eabi/lib/libc.a || \
	  missing="$$missing libnewlib-arm-none-eabi"; \
	command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || missing="$$missing gcc-arm-linux-gnueabihf"; \
	command -v qemu-arm >/dev/null 2>&1 || missing="$$missing qemu-user"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "machc: the cross-compilation tests will skip; to run them:"; \
	       echo "run:  sudo apt-get update && sudo apt-get install -y$$missing"; exit 0; fi; \
	  echo "machc: installing$$missing (cross tools for the embedded tests)"; \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null) || \
	    echo "machc: could not install$$missing; the cross-compilation tests will skip"; \
	fi

# --- the compiler ------------------------------------------------------------
$(GEN)/lexer.c: grammar/lexer.re $(GEN)/parser.h | $(BUILD)/.deps-ok
	@mkdir -p $(GEN)
	re2c -W --no-generation-date -o $@ $<

$(GEN)/parser.c $(GEN)/parser.h: grammar/parser.y | $(BUILD)/.deps-ok
	@mkdir -p $(GEN)
	bison -Wall -Werror --defines=$(GEN)/parser.h -o $(GEN)/parser.c $<

$(OBJ)/gen/%.o: $(GEN)/%.c compiler/machc.h $(GEN)/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-unused-function -Icompiler -I$(GEN) -c -o $@ $<

$(OBJ)/compiler/%.o: compiler/%.c $(wildcard compiler/*.h) $(GEN)/parser.h runtime/rt.h runtime/machrt.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icompiler -I$(GEN) -Iruntime \
	  -DMACHC_ROOT='"$(ROOT)"' -DMACHC_LIBDIR='"$(LIBDIR)"' \
	  -DMACHC_SANFLAGS='"$(SANFLAGS)"' $(MAIN_DEFS) -c -o $@ $<
# machc --mpi compiles and links generated code with these
$(OBJ)/compiler/main.o: MAIN_DEFS = -DMACHC_MPI_FLAGS='"$(MPI_CFLAGS) $(MPI_LIBS)"'

# machc reads weights files (--weights) with the runtime's own loader.
$(MACHC): $(COMPILER_OBJS) $(BUILD)/lib/libmachrt_f64.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ -lz -lm

# --- the runtime, once per real type -----------------------------------------
# -fno-math-errno: the optimizers' sqrt vectorises only when it need not set
# errno, and nothing in the runtime reads errno after a math function.
RT_OPT := -O2 -fno-math-errno
# The optimizer's passes at -O3: gcc vectorises a loop of unknown length only
# there (at -O2 its cheap cost model leaves them scalar).
$(OBJ)/rt32/optim.o $(OBJ)/rt64/optim.o: RT_OPT := -O3 -fno-math-errno
$(OBJ)/rt32/%.o: runtime/%.c runtime/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(RT_OPT) -DMACH_F32 -Iruntime -c -o $@ $<
$(OBJ)/rt64/%.o: runtime/%.c runtime/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(RT_OPT) -Iruntime -c -o $@ $<
$(BUILD)/lib/libmachrt_f32.a: $(RT32_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/lib/libmachrt_f64.a: $(RT64_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(OBJ)/rt32mpi/dist.o: runtime/dist.c runtime/*.h | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(RT_OPT) -DMACH_F32 -DMACH_MPI $(MPI_CFLAGS) -Iruntime -c -o $@ $<
$(OBJ)/rt64mpi/dist.o: runtime/dist.c runtime/*.h | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(RT_OPT) -DMACH_MPI $(MPI_CFLAGS) -Iruntime -c -o $@ $<
$(BUILD)/lib/libmachrt_mpi_f32.a: $(filter-out %/dist.o,$(RT32_OBJS)) $(OBJ)/rt32mpi/dist.o
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/lib/libmachrt_mpi_f64.a: $(filter-out %/dist.o,$(RT64_OBJS)) $(OBJ)/rt64mpi/dist.o
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# --- tests -------------------------------------------------------------------
# The directories too: a test file moved between the tiers relinks both.
$(TEST_BIN): $(TEST_SRCS) tests/*.h tests $(LIB_OBJS) $(RT_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -Icompiler -I$(GEN) -Iruntime \
	  -o $@ $(TEST_SRCS) $(LIB_OBJS) $(BUILD)/lib/libmachrt_f64.a -lcriterion -lz -lm

$(LONG_TEST_BIN): $(LONG_TEST_SRCS) tests/*.h tests/long $(LIB_OBJS) $(RT_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -Icompiler -I$(GEN) -Iruntime -Itests \
	  -o $@ $(LONG_TEST_SRCS) $(LIB_OBJS) $(BUILD)/lib/libmachrt_f64.a -lcriterion -lz -lm

$(EXAMPLE_TEST_BIN): $(EXAMPLE_TEST_SRCS) tests/*.h $(LIB_OBJS) $(RT_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -Icompiler -I$(GEN) -Iruntime -Itests \
	  -o $@ $(EXAMPLE_TEST_SRCS) $(LIB_OBJS) $(BUILD)/lib/libmachrt_f64.a -lcriterion -lz -lm

comma := ,
TEST_ENV = MACHC=$(abspath $(MACHC)) MACHC_TEST_TMP=$(abspath $(BUILD)/tmp) ASAN_OPTIONS=detect_leaks=0 \
           $(if $(SANFLAGS),MACHC_TEST_SO_SANITIZE=-fsanitize=address$(comma)undefined)

test: all $(TEST_BIN)
	@$(TEST_ENV) $(TEST_BIN) -j2

test-long: all deps-cross $(LONG_TEST_BIN)
	@$(TEST_ENV) $(LONG_TEST_BIN) -j2

test-examples: all $(EXAMPLE_TEST_BIN)
	@$(TEST_ENV) $(EXAMPLE_TEST_BIN) -j2

# One after the other (the tiers share build/tmp and its cache of compiled models).
test-all:
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory test-long
	@$(MAKE) --no-print-directory test-examples

# --- demo, bench, fuzz -------------------------------------------------------
demo: all
	@sh examples/run-poly.sh $(MACHC)

# Fashion-MNIST comes as a Debian package (IDX files under /usr/share/datasets).
FMNIST_DIR = /usr/share/datasets/fashion-mnist
example-fmnist: all
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "machc: missing Debian package: dataset-fashion-mnist"; \
	       echo "run:  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"; exit 1; fi; \
	  echo "machc: installing dataset-fashion-mnist"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    dataset-fashion-mnist >/dev/null || exit 1; \
	fi
	@FMNIST_DIR=$(FMNIST_DIR) sh examples/run-fmnist.sh $(MACHC)

example-sunspots: all
	@sh examples/run-sunspots.sh $(MACHC)

bench: all
	@THREADS=$(THREADS) sh bench/run.sh $(MACHC) $(PATTERN)

.PHONY: bench-check bench-deps bench-whole
bench-check: all
	@sh bench/check.sh $(MACHC) $(PATTERN)

# Whole processes: `BIN train` (one epoch) and `BIN forward` over a 200 MB
# .npy beside the same in a PyTorch script (bench/whole.sh says more).
bench-whole: all
	@sh bench/whole.sh $(MACHC) $(PATTERN)

# The PyTorch side of the benchmarks (optional: nothing else needs it).
# libopenblas0 replaces Debian's reference BLAS, which PyTorch's dense
# layers would otherwise run on, some 20 times slower.
BENCH_PKGS = python3-torch python3-numpy libopenblas0
bench-deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "run:  sudo apt-get update && sudo apt-get install -y $(BENCH_PKGS)"; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(BENCH_PKGS) >/dev/null

fuzz: all
	@sh tests/fuzz.sh $(MACHC)

# --- the depth diagrams of README.md: machc --emit=dot, drawn by Graphviz ----
diagrams: all
	@if ! command -v dot >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "machc: missing Debian package: graphviz"; \
	       echo "run:  sudo apt-get update && sudo apt-get install -y graphviz"; exit 1; fi; \
	  echo "machc: installing graphviz"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq graphviz >/dev/null || exit 1; \
	fi
	@mkdir -p docs/img
	$(MACHC) --emit=dot examples/poly.mach | dot -Tsvg -o docs/img/poly.svg
	$(MACHC) --emit=dot -m sine_recur examples/sine.mach | dot -Tsvg -o docs/img/sine.svg
	$(MACHC) --emit=dot examples/waves.mach | dot -Tsvg -o docs/img/waves.svg

# --- install -----------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/machc $(DESTDIR)$(PREFIX)/share/machc/stdlib \
	  $(DESTDIR)$(PREFIX)/include/machc
	install -m 755 $(MACHC) $(DESTDIR)$(PREFIX)/bin/machc
	install -m 644 $(RT_LIBS) $(RT_MPI_LIBS) $(DESTDIR)$(PREFIX)/lib/machc/
	install -m 644 runtime/machrt.h $(DESTDIR)$(PREFIX)/include/machc/
	install -m 644 stdlib/*.mach $(DESTDIR)$(PREFIX)/share/machc/stdlib/

clean:
	rm -rf build bin
