#!/usr/bin/env bash
# gpu-check.sh: the one prepared check for a machine with an NVIDIA GPU.
#
# It builds nothing on the GPU machine: it runs binaries built beforehand with
# CGO_ENABLED=0 (purego loads libcuda, NVRTC and cuBLAS at run time), and it
# ends within 8 minutes (every step has a timeout drawn from one budget).
#
# Build here (a machine without a GPU), from the repository root:
#
#   CGO_ENABLED=0 go build -o bin/offload ./cmd/offload &&
#   CGO_ENABLED=0 go test -c -o bin/cuda.test ./cuda &&
#   OFFLOAD_KERNEL_CACHE=$PWD/bin/kernels go test -count=1 -run TestCompileAllKernels ./cuda &&
#   mkdir -p bin/models/stories260K-q && cp -r ../shared/models/stories260K bin/models/ &&
#   cp ../shared/models/stories260K-q/stories260K-pad256-{Q4_K_M,Q8_0}.gguf bin/models/stories260K-q/
#
# The third line fills bin/kernels with CUBINs for sm_80/86/89/90 and PTX for
# newer cards, so the GPU machine needs no NVRTC (it uses one if it has it).
# bin/ is git-ignored: ship it with the tree (the device tool's carry: ["bin"]).
#
# Run there, from the repository root:
#
#   bash scripts/gpu-check.sh "$OUT"
#
# Results: $OUT/gpu-check/results.txt (one PASS/FAIL/SKIP line per step, then
# the measurements), plus each step's full output beside it. The exit status
# is 0 only if no step failed.
#
# Steps: print the GPU (nvidia-smi); the device conformance suite and the GPU
# kernel tests on the CUDA backend; host->device GB/s, pinned against
# pageable; stories260K in dense, sparse and Sirius modes, resident and
# streamed, on the GPU, whose tokens must equal the host backend's (the
# emulated TestEmuRunMatchesHost's runs), and Sirius with strict acceptance
# against dense decoding; the quantized files (stories260K padded to dim
# 256, Q4_K_M and Q8_0) dense and strict Sirius, resident and streamed, and
# Q4_K_M converted to neuron bundles in strict Sirius, against the host
# backend (the emulated TestEmuRunQuantMatchesHost's runs);
# a synthetic
# llama-3-70b-shaped model (LAYERS layers) benchmarked dense-streamed, sparse
# and Sirius in s/token and GB/s.
#
# Knobs (environment): BUDGET_S (total seconds, default 470); LAYERS (synthetic
# layers, default 4: each is a real 70B layer, 1.76 GB bf16); VOCAB (synthetic
# vocabulary, default 32000, Llama 2's, to keep embeddings and head at 0.5 GB
# each: the head is resident either way); DEVICE_MEM (if set, passed as
# --device-mem; unset, bench streams every layer, the paper's setting);
# TOKENS (stories260K tokens, default 32, as the emulated test); MODEL (stories260K file; default:
# found under bin/models or ../shared); QMODELS (directory of the quantized
# files; default: bin/models/stories260K-q or ../shared's).
set -uo pipefail

out_root=${1:-${OUT:-/tmp}}
dir="$out_root/gpu-check"
mkdir -p "$dir"
res="$dir/results.txt"
rm -f "$dir"/*.log "$dir"/*.json
: >"$res"

BUDGET_S=${BUDGET_S:-470}
LAYERS=${LAYERS:-4}
VOCAB=${VOCAB:-32000}
DEVICE_MEM=${DEVICE_MEM:-}
mem_flag=()
if [ -n "$DEVICE_MEM" ]; then mem_flag=(--device-mem "$DEVICE_MEM"); fi
TOKENS=${TOKENS:-32}
start=$(date +%s)
failed=0

say() { echo "$*" | tee -a "$res"; }

# remaining prints the seconds left in the budget, minus a reserve for the
# summary.
remaining() { echo $((BUDGET_S - ($(date +%s) - start) - 10)); }

# step NAME MAX_S CMD...: runs CMD with a timeout of min(MAX_S, remaining),
# output to $dir/NAME.log, and records PASS/FAIL/SKIP.
step() {
	local name=$1 max=$2
	shift 2
	local left
	left=$(remaining)
	if [ "$left" -lt 15 ]; then
		say "SKIP $name (out of time budget)"
		return 2
	fi
	local lim=$((max < left ? max : left))
	local t0=$(date +%s)
	if [ "$(type -t "$1")" = function ]; then
		# timeout runs programs, not shell functions: give it a subshell.
		export -f "$1"
		timeout --kill-after=5 "$lim" bash -c '"$@"' _ "$@" >"$dir/$name.log" 2>&1
	else
		timeout --kill-after=5 "$lim" "$@" >"$dir/$name.log" 2>&1
	fi
	local rc=$?
	local dt=$(($(date +%s) - t0))
	if [ $rc -eq 0 ]; then
		say "PASS $name (${dt}s)"
	elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		say "FAIL $name (timed out after ${lim}s)"
		failed=1
	else
		say "FAIL $name (exit $rc, ${dt}s; see $name.log)"
		tail -n 15 "$dir/$name.log" | sed 's/^/    /' | tee -a "$res"
		failed=1
	fi
	return $rc
}

say "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), budget ${BUDGET_S}s"

for f in bin/offload bin/cuda.test; do
	if [ ! -x "$f" ]; then
		say "FAIL missing $f: build it first (see the top of scripts/gpu-check.sh)"
		exit 1
	fi
done

# 1. The GPU and the libraries the backend will load.
step nvidia-smi 20 nvidia-smi
sed -n '1,15p' "$dir/nvidia-smi.log" | tee -a "$res"
nvidia-smi --query-gpu=name,memory.total,pcie.link.gen.current,pcie.link.width.current,driver_version --format=csv 2>&1 | tee -a "$res"
{
	echo "# ldconfig"
	ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvrtc|libcublas' || echo "(none of libcuda/libnvrtc/libcublas in ldconfig)"
} >"$dir/libs.log" 2>&1
# cuBLAS and NVRTC are optional; look for them where toolkits and Python
# wheels put them when ldconfig does not know them.
find_lib() {
	timeout 20 find /usr/local /opt /usr/lib /usr/lib64 /root /home -xdev -name "$1" 2>/dev/null | sort -r | head -n 1
}
if ! grep -q 'libcublas\.so' "$dir/libs.log"; then
	p=$(find_lib 'libcublas.so.1[0-9]*')
	if [ -n "$p" ]; then
		export OFFLOAD_LIBCUBLAS=$p LD_LIBRARY_PATH="$(dirname "$p")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
		echo "found $p" >>"$dir/libs.log"
	fi
fi
if ! grep -q 'libnvrtc\.so' "$dir/libs.log"; then
	p=$(find_lib 'libnvrtc.so.1[0-9]*')
	if [ -n "$p" ]; then
		export OFFLOAD_LIBNVRTC=$p
		echo "found $p" >>"$dir/libs.log"
	fi
fi
cat "$dir/libs.log" | tee -a "$res"

# Kernels compiled on the build machine; NVRTC here (if any) fills the same
# cache for anything missing.
export OFFLOAD_KERNEL_CACHE="$PWD/bin/kernels"
mkdir -p "$OFFLOAD_KERNEL_CACHE" 2>/dev/null || export OFFLOAD_KERNEL_CACHE="$dir/kernels"
export OFFLOAD_REQUIRE_GPU=1

# 2. Conformance suite and GPU kernel tests on the CUDA backend. Test
# binaries run in their package directory (as go test does: testdata/).
cuda_test() { (cd cuda && ../bin/cuda.test "$@"); }
step devicetest 180 cuda_test -test.v -test.count=1 -test.timeout=170s \
	-test.run 'TestGPU|TestFake|TestNoDriver|TestChoose|TestKernelCache|TestPackArgs'
grep -E '^(--- |ok|PASS|FAIL)' "$dir/devicetest.log" | grep -vE '^    ' | tail -n 20 | tee -a "$res"
grep -m1 'cuda:0' "$dir/devicetest.log" | sed 's/^ *//' | tee -a "$res"

# 3. Host->device bandwidth, pinned against pageable (256 MiB copies).
step h2d 60 cuda_test -test.run '^$' -test.bench 'BenchmarkH2D' -test.benchtime 8x -test.count=1
grep -E 'BenchmarkH2D' "$dir/h2d.log" | tee -a "$res"

# 4. stories260K: GPU tokens must equal the host backend's, in dense, sparse
# and Sirius modes, with every weight resident and streamed (--device-mem
# 1MiB): the same runs, with the same flags, as the emulated
# TestEmuRunMatchesHost (cmd/offload/emu_run_test.go), so the emulated and
# the real device answer the same questions. Then Sirius with strict
# acceptance must give dense decoding's tokens on the GPU.
model=${MODEL:-}
for m in bin/models/stories260K/stories260K.gguf ../shared/models/stories260K/stories260K.gguf shared/models/stories260K/stories260K.gguf; do
	if [ -z "$model" ] && [ -f "$m" ]; then model=$m; fi
done
tokens_of() { [ -f "$1" ] && tr -d ' \n\t' <"$1" | grep -o '"tokens":\[[-0-9,]*\]' | head -n 1; }
# compare NAME [LABEL]: cuda tokens of stories-NAME-cuda.log against host's.
compare() {
	local a b label=${2:-stories260K}
	a=$(tokens_of "$dir/stories-$1-host.log")
	b=$(tokens_of "$dir/stories-$1-cuda.log")
	if [ -n "$a" ] && [ "$a" = "$b" ]; then
		say "PASS $label $1: cuda tokens == host tokens ($(echo "$a" | tr -cd ',' | wc -c) + 1 tokens)"
	else
		say "FAIL $label $1: cuda tokens differ from host"
		say "    host: ${a:0:300}"
		say "    cuda: ${b:0:300}"
		failed=1
	fi
}
# run_pair NAME LABEL MODEL ARGS...: `offload run --json` with ARGS on the
# host backend and on cuda (logs stories-NAME-host/cuda), then compare.
run_pair() {
	local name=$1 label=$2 m=$3 dev
	shift 3
	for dev in host cuda; do
		step "stories-$name-$dev" 60 bin/offload run --model "$m" --device "$dev" "$@" --json
		cp "$dir/stories-$name-$dev.log" "$dir/stories-$name-$dev.json" 2>/dev/null
	done
	compare "$name" "$label"
}
if [ -z "$model" ]; then
	say "SKIP stories260K (model not found: copy ../shared/models/stories260K to bin/models/, or set MODEL)"
else
	for mode in dense sparse sirius; do
		for mem in resident streamed; do
			extra=(--mode "$mode")
			if [ "$mode" = sirius ]; then extra+=(--window 8 --window-policy fixed); fi
			if [ "$mem" = streamed ]; then extra+=(--device-mem 1MiB); fi
			run_pair "$mode-$mem" stories260K "$model" "${extra[@]}" --prompt "Once upon a time" -n "$TOKENS"
		done
	done
	run_pair strict stories260K "$model" --mode sirius --accept strict --window 16 --window-policy fixed \
		--prompt "Once upon a time" -n "$TOKENS"
	a=$(tokens_of "$dir/stories-dense-resident-cuda.log")
	b=$(tokens_of "$dir/stories-strict-cuda.log")
	if [ -n "$a" ] && [ "$a" = "$b" ]; then
		say "PASS stories260K on cuda: sirius (strict) tokens == dense tokens"
	else
		say "FAIL stories260K on cuda: sirius (strict) tokens differ from dense"
		failed=1
	fi
fi

# 4b. Quantized weights: stories260K padded to dim 256, Q4_K_M (Q4_K and
# Q6_K tensors) and Q8_0, dense and strict Sirius, resident and streamed
# (--device-mem 2MiB), then strict Sirius on Q4_K_M converted here to
# neuron bundles (quantized bundle rows gathered on the GPU, down columns
# multiplied transposed): GPU tokens must equal the host backend's. The same
# runs, with the same flags, as the emulated TestEmuRunQuantMatchesHost
# (cmd/offload/emu_quant_test.go).
qdir=${QMODELS:-}
for d in bin/models/stories260K-q ../shared/models/stories260K-q shared/models/stories260K-q; do
	if [ -z "$qdir" ] && [ -f "$d/stories260K-pad256-Q8_0.gguf" ]; then qdir=$d; fi
done
if [ -z "$qdir" ]; then
	say "SKIP quantized stories260K (not found: copy the Q4_K_M and Q8_0 files to bin/models/stories260K-q/, or set QMODELS)"
else
	for q in Q4_K_M Q8_0; do
		for mode in dense sirius; do
			for mem in resident streamed; do
				extra=(--mode "$mode")
				if [ "$mode" = sirius ]; then extra+=(--accept strict --window 8 --window-policy fixed); fi
				if [ "$mem" = streamed ]; then extra+=(--device-mem 2MiB); fi
				run_pair "$q-$mode-$mem" "quantized stories260K" "$qdir/stories260K-pad256-$q.gguf" "${extra[@]}" \
					--prompt "Once upon a time" -n 24
			done
		done
		a=$(tokens_of "$dir/stories-$q-dense-resident-cuda.log")
		b=$(tokens_of "$dir/stories-$q-sirius-resident-cuda.log")
		if [ -n "$a" ] && [ "$a" = "$b" ]; then
			say "PASS quantized stories260K $q on cuda: sirius (strict) tokens == dense tokens"
		else
			say "FAIL quantized stories260K $q on cuda: sirius (strict) tokens differ from dense"
			failed=1
		fi
	done
	bundled="$dir/stories260K-pad256-Q4_K_M-bundled.gguf"
	if step convert-bundled 60 bin/offload convert --model "$qdir/stories260K-pad256-Q4_K_M.gguf" -o "$bundled"; then
		for mem in resident streamed; do
			extra=(--mode sirius --accept strict --window 8 --window-policy fixed)
			if [ "$mem" = streamed ]; then extra+=(--device-mem 2MiB); fi
			run_pair "Q4_K_M-bundled-sirius-$mem" "quantized stories260K" "$bundled" "${extra[@]}" \
				--prompt "Once upon a time" -n 24
		done
	fi
	rm -f "$bundled"
fi

# 5. Synthetic llama-3-70b-shaped model: dense-streamed, sparse, Sirius.
synth="$dir/synth-70b"
if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2{print $4}')" -gt $((40 * 1024 * 1024)) ]; then
	synth=/dev/shm/offload-synth-70b # page cache without a disk write
fi
rm -rf "$synth"
if step synth 150 bin/offload synth --shape llama-3-70b --layers "$LAYERS" --vocab "$VOCAB" --dtype bf16 -o "$synth"; then
	du -sh "$synth" 2>/dev/null | tee -a "$res"
	step bench-70b 200 bin/offload bench --model "$synth" --device cuda "${mem_flag[@]}" \
		--modes dense,sparse,sirius --n 16 --prompt-len 16 --json
	cp "$dir/bench-70b.log" "$dir/bench-70b.json" 2>/dev/null
	# s/token and copy GB/s per mode, from the JSON results.
	tr -d '\n' <"$dir/bench-70b.log" | grep -o '"mode": *"[a-z]*"[^}]*"seconds_per_token": *[0-9.e+-]*[^}]*"copy_gb_per_s": *[0-9.e+-]*' |
		sed -E 's/"mode": *"([a-z]+)".*"seconds_per_token": *([0-9.e+-]+).*"copy_gb_per_s": *([0-9.e+-]+)/bench-70b (\1): \2 s\/token, \3 GB\/s copy/' | tee -a "$res"
	step bench-70b-pageable 90 bin/offload bench --model "$synth" --device cuda "${mem_flag[@]}" \
		--pinned=false --modes dense --n 8 --prompt-len 16 --json
	tr -d '\n' <"$dir/bench-70b-pageable.log" | grep -o '"seconds_per_token": *[0-9.e+-]*[^}]*"copy_gb_per_s": *[0-9.e+-]*' |
		sed -E 's/"seconds_per_token": *([0-9.e+-]+).*"copy_gb_per_s": *([0-9.e+-]+)/bench-70b (dense, pageable): \1 s\/token, \2 GB\/s copy/' | tee -a "$res"
fi
rm -rf "$synth"

say "elapsed $(($(date +%s) - start))s; $( [ $failed -eq 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
exit $failed
