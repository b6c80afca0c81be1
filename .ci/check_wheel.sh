#!/usr/bin/env bash
# `make wheel-check`: the package as a user gets it. Builds the sdist and, from it, the wheel (what
# `python -m build` does), checks them with twine, checks that the tree builds the very same wheel
# and that the wheel holds every file of the package and the example DAGs, installs the wheel in a
# fresh venv with only its declared dependencies, then runs .ci/check_installed.py there, outside
# the clone. Needs the dev environment (.venv) for build, twine and pip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dev=$root/.venv/bin
work=$(mktemp -d "${TMPDIR:-/tmp}/abp-wheel-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS

fail() {
    echo "wheel-check FAILED: $*" >&2
    exit 1
}

# Run a command, showing its output only when it fails.
quiet() {
    "$@" >"$work/output" 2>&1 || { cat "$work/output"; fail "$*"; }
}

echo "== build the sdist, the wheel from the sdist, and the wheel from the tree (at $((SECONDS - started)) s)"
quiet "$dev/python" -m build --outdir "$work/dist" "$root"
quiet "$dev/python" -m build --wheel --outdir "$work/tree" "$root"
sdist=$(echo "$work"/dist/*.tar.gz)
wheel=$(echo "$work"/dist/*.whl)
quiet "$dev/twine" check --strict "$sdist" "$wheel"
# The same RECORD is the same files with the same hashes.
diff <(unzip -p "$wheel" '*.dist-info/RECORD') <(unzip -p "$work"/tree/*.whl '*.dist-info/RECORD') ||
    fail "the sdist builds another wheel than the tree (diff of the RECORDs above)"

# Every file of the package (templates included) and every example DAG, nothing else.
(
    cd "$root"
    find airflow_batch_provider -type f -not -path '*/__pycache__/*'
    find example_dags -type f -not -path '*/__pycache__/*' | sed 's|^|airflow_batch_provider/|'
) | sort >"$work/expected"
unzip -Z1 "$wheel" >"$work/wheel-files"
tar -tzf "$sdist" >"$work/sdist-files"
grep -v '\.dist-info/' "$work/wheel-files" | sort >"$work/shipped"
diff "$work/expected" "$work/shipped" || fail "the wheel's files differ from the source's (< source, > wheel)"
grep -q '\.dist-info/licenses/LICENSE$' "$work/wheel-files" || fail "no LICENSE in the wheel"
for name in LICENSE CHANGELOG.md README.md; do
    grep -qx "[^/]*/$name" "$work/sdist-files" || fail "no $name in the sdist"
done
echo "ok      $(basename "$sdist") and $(basename "$wheel"): twine, same wheel from both, $(wc -l <"$work/shipped") files"

echo "== install the wheel in a fresh venv (at $((SECONDS - started)) s)"
"$dev/python" -m venv --without-pip "$work/venv"
# Only the wheel's own dependencies are installed; the dev environment's versions pin them, so
# the result does not change with each new release on PyPI.
"$dev/pip" freeze --exclude-editable >"$work/constraints.txt"
quiet "$dev/pip" --python "$work/venv/bin/python" install --no-compile -c "$work/constraints.txt" "$wheel"
quiet "$dev/pip" --python "$work/venv/bin/python" check

echo "== the installed package, run from outside the clone (at $((SECONDS - started)) s)"
cd "$work"
# TMPDIR: the demo's Airflow home and results land in $work, removed on exit. Bytecode is
# written (pip was told not to compile all of it) so that each airflow command after the first
# does not compile Airflow's imports again.
env -u PYTHONPATH -u PYTHONDONTWRITEBYTECODE TMPDIR="$work" "$work/venv/bin/python" "$root/.ci/check_installed.py"
echo "wheel-check passed in $((SECONDS - started)) s"
