#!/usr/bin/env bash
# fuzz.sh: run every Go fuzz target in the tree for a bounded time each
# (FUZZTIME, default 4s), so every parser and fast kernel is fuzzed in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-4s}
n=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "fuzz: $pkg $name ($t)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$ 2>&1 || { cat /tmp/fuzz.$$; rm -f /tmp/fuzz.$$; exit 1; }
	n=$((n + 1))
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's#^\./##; s#:func #:#' | sort)
rm -f /tmp/fuzz.$$
echo "fuzz: $n targets ran for $t each, no failures"
