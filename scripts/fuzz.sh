#!/usr/bin/env bash
# fuzz.sh: run every Go fuzz target in the tree for a bounded time each
# (FUZZTIME, default 4s), so every parser and fast kernel is fuzzed in CI,
# and say how many inputs each ran per minute (a target below ~10,000/min
# is spending its budget on something other than fuzzing).
#
# Each new interesting input is minimised for at most FUZZMINTIME (default
# 100 executions; Go's default is 60s, which a slow input can take from a
# 4s budget). A count rather than a time: a target whose inputs cost
# milliseconds (quantising a row of every type) otherwise spends its whole
# budget minimising (1s: 6k inputs/min; 100x: 570k/min).
#
# Go 1.26's fuzz coordinator can fail a run with a bare "context deadline
# exceeded" as -fuzztime expires, writing no failing input (golang/go#75804,
# fixed in Go 1.27). Such a run is retried once; a real finding always writes
# its input to testdata/fuzz/ and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-4s}
mt=${FUZZMINTIME:-100x}
n=0
flakes=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { go test -run '^$' -fuzz "^${2}\$" -fuzztime "$t" -fuzzminimizetime "$mt" "$1" >"$log" 2>&1; }
# rate prints, from the coordinator's last progress line, the inputs run,
# their rate over the whole budget (gathering the baseline coverage of the
# seed corpus included) and over the last interval it reported.
rate() {
	local last
	last=$(grep -o 'elapsed: [0-9]*s, execs: [0-9]* ([0-9]*/sec)' "$log" | tail -1)
	if [ -z "$last" ]; then
		echo "no inputs run: gathering the baseline coverage took the whole budget"
		return
	fi
	echo "$last" | sed -E 's/elapsed: ([0-9]+)s, execs: ([0-9]+) \(([0-9]+)\/sec\)/\1 \2 \3/' |
		awk '{ s = $1 > 0 ? $1 : 1
		printf "%d execs in %ds: %d/min overall, %d/min in the last interval", $2, s, $2 * 60 / s, $3 * 60 }'
}
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "fuzz: $pkg $name ($t)"
	ok=0
	for try in 1 2; do
		if run "$pkg" "$name"; then
			ok=1
			break
		fi
		if grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
			ok=0 # a real failure
			break
		fi
		echo "fuzz: $name hit the Go fuzz coordinator's deadline race (golang/go#75804), no input written; try $try"
		flakes=$((flakes + 1))
		ok=2
	done
	if [ "$ok" = 0 ]; then
		cat "$log"
		exit 1
	fi
	echo "fuzz: $pkg $name: $(rate)"
	n=$((n + 1))
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's#^\./##; s#:func #:#' | sort)
echo "fuzz: $n targets ran for $t each, no failures ($flakes coordinator deadline races retried)"
