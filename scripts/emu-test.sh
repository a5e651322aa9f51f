#!/usr/bin/env bash
# emu-test.sh: execute every CUDA kernel on the CPU emulator of the CUDA
# driver, NVRTC and cuBLAS (../shared/emucuda, found and built by
# internal/emu), under each warp/lane schedule and once with a different
# poison byte. `make test` (and so CI) runs it.
#
# For each configuration it runs, in fresh processes (the emulator reads its
# settings when it is loaded):
#   - ./cuda: the device conformance suite (pinned and pageable host memory)
#     and the GPU kernel tests, TestGPU*;
#   - ./cmd/offload: TestEmuRunMatchesHost, `offload run --device cuda` on
#     stories260K in dense, sparse and Sirius modes, resident and streamed,
#     whose tokens must equal the host backend's; and TestEmuRunQuantMatchesHost,
#     the same on quantized files (Q4_K_M, Q8_0; dense and strict Sirius,
#     resident and streamed; strict Sirius on Q4_K_M as neuron bundles),
#     whose ten runs are spread over the configurations
#     (OFFLOAD_EMU_SHARD=k/n: configuration k of n runs every n-th), so that
#     one `make test` runs each once.
# and prints how many kernels ran (EMU_PROFILE=1) and how many launches. A
# kernel of cuda/kernels.cu that the cuda tests never launch is a failure.
#
# Knobs: EMU_SEED (the random schedule's seed; default: a new one each run,
# printed so that a failure can be replayed), EMU_CONFIGS (a subset of
# "forward reverse random poison"), GO.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
seed=${EMU_SEED:-$(( $(date +%s) % 100000 ))}
configs=${EMU_CONFIGS:-forward reverse random poison}
logs=.emucuda/logs
mkdir -p "$logs"
cxx=${CXX:-g++}
if ! command -v "${cxx%% *}" >/dev/null; then
	if [ "${CI:-}" = true ]; then
		echo "emu: FAIL: CI=true but ${cxx%% *} is not installed: CI must execute the CUDA kernels (apt-get install g++)"
		exit 1
	fi
	echo "emu: SKIPPED: ${cxx%% *} not found; the CUDA emulator needs it to build and to compile kernels (apt-get install g++)"
	exit 0
fi
kernels=$(grep -o 'extern "C" __global__ void [a-z0-9_]*' cuda/kernels.cu | awk '{print $5}' | sort -u)
nkernels=$(echo "$kernels" | wc -l)
failed=0
start=$(date +%s)
ran=()
nconfigs=$(echo $configs | wc -w)

# profile LOG: "kernel launches" per kernel, the largest running total the
# emulator printed (it prints its totals at every module unload).
profile() {
	awk '$1 == "emucuda:" && $4 == "launches" && $6 == "blocks" && NF == 8 { if ($3 > n[$2]) n[$2] = $3 }
		END { for (k in n) print k, n[k] }' "$1" | sort
}

# failures LOG: what to show of a failed run.
failures() {
	grep -E '^(\s*--- FAIL|FAIL|panic:|emucuda: .*(block|error|SIGSEGV|failed))|_test\.go:[0-9]+:' "$1" | grep -vE -- '--- PASS' | head -n 40
}

for c in $configs; do
	case $c in
	forward) env=(EMU_SCHEDULE=forward) ;;
	reverse) env=(EMU_SCHEDULE=reverse) ;;
	random) env=(EMU_SCHEDULE=random:$seed) c=random:$seed ;;
	poison) env=(EMU_SCHEDULE=forward EMU_POISON=0x7f) c="forward+poison=0x7f" ;;
	*)
		echo "emu-test: unknown configuration $c (want forward, reverse, random, poison)"
		exit 2
		;;
	esac
	t0=$(date +%s)
	name=${c//[^a-z0-9]/_}
	ok=1
	env OFFLOAD_EMU=1 EMU_PROFILE=1 "${env[@]}" $GO test -count=1 -v -run '^TestGPU' ./cuda >"$logs/$name-cuda.log" 2>&1 || ok=0
	env OFFLOAD_EMU=1 OFFLOAD_EMU_SHARD=${#ran[@]}/$nconfigs "${env[@]}" $GO test -count=1 -v -run '^TestEmuRun(Quant)?MatchesHost$' ./cmd/offload >"$logs/$name-e2e.log" 2>&1 || ok=0
	if [ "$c" = forward ]; then
		# The device calls of a dense and a Sirius generation failed in
		# turn (engine's fault sweep), once: every Alloc and Synchronize,
		# every tenth copy and kernel (-short; all 580 take two minutes);
		# and every quantized fixture's logits against the oracle.
		env OFFLOAD_EMU=1 "${env[@]}" $GO test -short -count=1 -v -run '^(TestEmuFaultInjection|TestEmuQuantizedOracle)$' ./engine >"$logs/$name-faults.log" 2>&1 || {
			ok=0
			failures "$logs/$name-faults.log" | sed 's/^/    /'
		}
	fi
	prof=$(profile "$logs/$name-cuda.log")
	nran=$(echo "$prof" | grep -c . || true)
	launches=$(echo "$prof" | awk '{s += $2} END {print s + 0}')
	missing=$(comm -23 <(echo "$kernels") <(echo "$prof" | awk '{print $1}' | sort))
	e2e=$(grep -o 'emu-e2e: .*' "$logs/$name-e2e.log" | tail -n 1)
	e2e=${e2e#emu-e2e: }
	e2eq=$(grep -o 'emu-e2e-quant: .*' "$logs/$name-e2e.log" | tail -n 1)
	e2eq=${e2eq#emu-e2e-quant: }
	checked=("$logs/$name-cuda.log" "$logs/$name-e2e.log")
	[ -f "$logs/$name-faults.log" ] && checked+=("$logs/$name-faults.log")
	if grep -q -- '--- SKIP' "${checked[@]}"; then
		ok=0
		grep -h -A2 -- '--- SKIP' "${checked[@]}" | head -n 6
	fi
	status=PASS
	if [ $ok = 0 ] || [ -n "$missing" ]; then status=FAIL; failed=1; fi
	echo "emu $status $c ($(($(date +%s) - t0))s): cuda tests ran $nran of $nkernels kernels ($launches launches); end-to-end ${e2e:-did not finish}; quantized ${e2eq:-did not finish}"
	if [ -n "$missing" ]; then echo "    never launched: $(echo $missing)"; fi
	if [ $ok = 0 ]; then
		failures "$logs/$name-cuda.log" | sed 's/^/    /'
		failures "$logs/$name-e2e.log" | sed 's/^/    /'
		echo "    full output: $logs/$name-cuda.log, $logs/$name-e2e.log"
	fi
	ran+=("$c")
done
echo "emu: ${#ran[@]} configurations (${ran[*]}) in $(($(date +%s) - start))s; $([ $failed = 0 ] && echo 'all passed' || echo 'SOME FAILED')"
exit $failed
