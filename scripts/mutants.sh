#!/usr/bin/env bash
# mutants.sh: mutation check of the CUDA kernels on the emulator.
#
# It applies, one at a time, small known-bad edits to a copy of
# cuda/kernels.cu (every __syncthreads removed in turn, off-by-one bounds,
# wrong reduction lanes, the attention tile's barrier and rescaling, and in
# the quantized kernels wrong bits, nibble halves, scale and min indices,
# signs and offsets, blocks and strides), runs
# the CUDA package's device tests (TestGPU*: the conformance suite and the
# GPU tests) on the emulator under the forward, reverse and random
# schedules and with EMU_POISON=0x7f until one fails, and prints a table of which mutants the suite
# caught, how, and which survived. A survivor is then run end to end
# (TestEmuRunMatchesHost and TestEmuRunQuantMatchesHost) as well. Every mutant that changes results must
# be caught; the table and the reasoning for any survivor are kept in the
# cuda package doc (cuda/doc.go).
#
# Not part of `make test` (minutes): run `make mutants` after changing the
# kernels or the tests. The copy and results.md live in $MUTANTS_DIR
# (default $TMPDIR/offload-mutants): outside the module, so that no tool
# walking the tree (go, fuzz.sh, grep) meets a second copy of it. MUTANTS (a space-separated list of names) runs a
# subset; SCHEDULES overrides "forward reverse random:1 poison" (poison:
# the forward schedule with EMU_POISON=0x7f).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
GO=${GO:-go}
export OFFLOAD_SHARED=${OFFLOAD_SHARED:-$(cd .. && pwd)/shared}
export OFFLOAD_EMU=1
schedules=${SCHEDULES:-forward reverse random:1 poison}
work=${MUTANTS_DIR:-${TMPDIR:-/tmp}/offload-mutants}
copy=$work/src
mkdir -p "$work"

# The mutants: NAME @@ FROM @@ TO, one a line. FROM must occur exactly once
# in kernels.cu (\n is a newline); it is replaced by TO.
mutants=$(
	cat <<'EOF'
sync-block_sum-before-write @@ v = warp_sum(v);\n    __syncthreads(); @@ v = warp_sum(v);
sync-block_sum-before-read @@ red[warp] = v;\n    __syncthreads();\n    float t = 0.0f; @@ red[warp] = v;\n    float t = 0.0f;
sync-block_max-before-write @@ v = warp_max(v);\n    __syncthreads(); @@ v = warp_max(v);
sync-block_max-before-read @@ red[warp] = v;\n    __syncthreads();\n    float t = -F32_INF; @@ red[warp] = v;\n    float t = -F32_INF;
sync-matmul_t-publish @@ __syncthreads();\n        if (s == 0 && c < out) @@ if (s == 0 && c < out)
sync-matmul_t-reuse @@ t += part[j][k][lane];\n                y[(i64)(r0 + k) * out + c] = t;\n            }\n        }\n        __syncthreads(); @@ t += part[j][k][lane];\n                y[(i64)(r0 + k) * out + c] = t;\n            }\n        }
sync-attention-scores @@ sc[t] = d * scale;\n        }\n        __syncthreads(); @@ sc[t] = d * scale;\n        }
sync-attention-tile-end @@ m = mn;\n        __syncthreads(); @@ m = mn;
sync-argmax @@ bi[warp] = bidx; }\n    __syncthreads(); @@ bi[warp] = bidx; }
attention-rescale-sign @@ expf(m - mn) @@ expf(mn - m)
attention-sum-not-rescaled @@ l = l * corr + ts; @@ l = l + ts;
attention-tile-bound @@ int tn = min(ATT_TILE, len - t0); @@ int tn = min(ATT_TILE, len - t0 - 1);
attention-causal-bound @@ int len = pos0 + r + 1; @@ int len = pos0 + r;
warp_sum-lanes @@ for (int o = 16; o > 0; o >>= 1) v += @@ for (int o = 8; o > 0; o >>= 1) v +=
warp_sum-shfl_down @@ v += __shfl_xor_sync(0xffffffffu, v, o) @@ v += __shfl_down_sync(0xffffffffu, v, o)
warp_max-lanes @@ for (int o = 16; o > 0; o >>= 1) v = fmaxf @@ for (int o = 16; o > 1; o >>= 1) v = fmaxf
block_sum-warp-count @@ nw = (blockDim.x + 31) >> 5;\n    v = warp_sum(v); @@ nw = (blockDim.x + 31) >> 6;\n    v = warp_sum(v);
argmax-lanes @@ for (int o = 16; o > 0; o >>= 1) {\n        float ov @@ for (int o = 16; o > 1; o >>= 1) {\n        float ov
argmax-last-warp @@ for (int w = 1; w < nw; w++) @@ for (int w = 1; w < nw - 1; w++)
argmax-tie @@ (ov == best && oi < bidx) @@ (ov == best && oi > bidx)
matmul-row-bound @@ if (o >= out) return;\n    const typename @@ if (o > out) return;\n    const typename
matmul-inner-bound @@ for (int i = lane; i < in; i += 32) @@ for (int i = lane; i < in - 1; i += 32)
matmul_t-col-bound @@ if (s == 0 && c < out) @@ if (s == 0 && c <= out)
matmul_t-split-sum @@ for (int j = 0; j < MMT_SPLIT; j++) t += @@ for (int j = 1; j < MMT_SPLIT; j++) t +=
rmsnorm-mean @@ ss / (float)cols @@ ss / (float)(cols - 1)
rope-bound @@ if (p >= (i64)n * pairsPerRow) return;\n    int r = (int)(p / pairsPerRow), q = (int)(p % pairsPerRow);\n    int i = q % hp;\n    double @@ if (p > (i64)n * pairsPerRow) return;\n    int r = (int)(p / pairsPerRow), q = (int)(p % pairsPerRow);\n    int i = q % hp;\n    double
gather_rows-bound @@ row >= srcRows @@ row > srcRows
gather_cols_t-bound @@ c >= cols @@ c > cols
silu_mul-stride @@ i += (i64)gridDim.x * blockDim.x) {\n        float g @@ i += blockDim.x) {\n        float g
softmax-last-element @@ i < cols; i += blockDim.x) yr[i] = expf @@ i < cols - 1; i += blockDim.x) yr[i] = expf
loglik-token-bound @@ t < 0 || t >= cols @@ t < 0 || t > cols
matmul-reduce-rows @@ xr[(i64)k * in + i];\n        }\n#pragma unroll\n        for (int k = 0; k < MM_ROWS; k++)\n            if (k < nr) @@ xr[(i64)k * in + i];\n        }\n#pragma unroll\n        for (int k = 0; k < MM_ROWS; k++)\n            if (k < nr - 1)
q4_0-nibble-half @@ q = (l < 16 ? q & 15 : q >> 4) - 8; @@ q = (l < 16 ? q >> 4 : q & 15) - 8;
q4_0-no-offset @@ q = (l < 16 ? q & 15 : q >> 4) - 8; @@ q = (l < 16 ? q & 15 : q >> 4);
q4_0-byte @@ int q = b[2 + (l & 15)]; @@ int q = b[2 + (l & 7)];
q4_1-min-sign @@ q = l < 16 ? q & 15 : q >> 4;\n        return __fmul_rn((float)q, ldh(b)) + ldh(b + 2); @@ q = l < 16 ? q & 15 : q >> 4;\n        return __fmul_rn((float)q, ldh(b)) - ldh(b + 2);
q4_1-scale-index @@ q = l < 16 ? q & 15 : q >> 4;\n        return __fmul_rn((float)q, ldh(b)) @@ q = l < 16 ? q & 15 : q >> 4;\n        return __fmul_rn((float)q, ldh(b + 2))
q5_0-qh-byte @@ ((b[2 + (l >> 3)] >> (l & 7)) & 1) << 4; @@ ((b[2 + (l >> 4)] >> (l & 7)) & 1) << 4;
q5_0-no-offset @@ return (float)(q - 16) * ldh(b); @@ return (float)q * ldh(b);
q5_1-qh-bit @@ ((b[4 + (l >> 3)] >> (l & 7)) & 1) << 4; @@ ((b[4 + (l >> 3)] >> (l & 3)) & 1) << 4;
q5_1-quants-offset @@ int q = b[8 + (l & 15)]; @@ int q = b[7 + (l & 15)];
q8_0-unsigned @@ (float)(signed char)b[2 + l] @@ (float)b[2 + l]
q8_0-byte @@ (float)(signed char)b[2 + l] @@ (float)(signed char)b[1 + l]
q2_k-min-nibble @@ ml = __fmul_rn(dmin, (float)(sc >> 4)); @@ ml = __fmul_rn(dmin, (float)(sc & 15));
q2_k-scale-group @@ int sc = b[8 * h + 2 * s + (l >> 4)]; @@ int sc = b[8 * h + 2 * s];
q2_k-shift @@ int q = (b[16 + 32 * h + l] >> (2 * s)) & 3; @@ int q = (b[16 + 32 * h + l] >> s) & 3;
q2_k-d-dmin @@ float d = ldh(b + 80), dmin = ldh(b + 82); @@ float d = ldh(b + 82), dmin = ldh(b + 80);
q3_k-hmask-sense @@ if (!((hm >> (4 * h + s)) & 1)) q -= 4; @@ if ((hm >> (4 * h + s)) & 1) q -= 4;
q3_k-hmask-bit @@ if (!((hm >> (4 * h + s)) & 1)) q -= 4; @@ if (!((hm >> (2 * h + s)) & 1)) q -= 4;
q3_k-scale-high @@ int hi = (sc[8 + (g & 3)] >> (2 * (g >> 2))) & 3; @@ int hi = (sc[8 + (g & 3)] >> (2 * (g & 3))) & 3;
q3_k-scale-low @@ int lo = g < 8 ? sc[g] & 15 : sc[g - 8] >> 4; @@ int lo = g < 8 ? sc[g] >> 4 : sc[g - 8] & 15;
q3_k-scale-bias @@ float dl = d * (float)((lo | hi << 4) - 32); @@ float dl = d * (float)(lo | hi << 4);
k4-min-low @@ *m = q[g + 4] & 63; @@ *m = q[g] & 63;
k4-min-high @@ *m = (q[g + 4] >> 4) | ((q[g] >> 6) << 4); @@ *m = (q[g + 4] >> 4) | ((q[g - 4] >> 6) << 4);
k4-scale-high @@ *sc = (q[g + 4] & 15) | ((q[g - 4] >> 6) << 4); @@ *sc = (q[g + 4] & 15) | ((q[g - 4] >> 4) << 4);
q4_k-nibble-half @@ q = k ? q >> 4 : q & 15; @@ q = k ? q & 15 : q >> 4;
q4_k-min-sign @@ q = k ? q >> 4 : q & 15;\n        float dl = d * (float)sc, ml = __fmul_rn(dmin, (float)m);\n        return __fmul_rn(dl, (float)q) - ml; @@ q = k ? q >> 4 : q & 15;\n        float dl = d * (float)sc, ml = __fmul_rn(dmin, (float)m);\n        return __fmul_rn(dl, (float)q) + ml;
q4_k-chunk @@ int q = b[16 + 32 * c + l]; @@ int q = b[16 + 32 * k + l];
q5_k-high-bit @@ ((qh >> j) & 1) << 4; @@ ((qh >> c) & 1) << 4;
q5_k-quants-offset @@ int q = b[48 + 32 * c + l]; @@ int q = b[16 + 32 * c + l];
q6_k-low-half @@ int lo = b[64 * h + 32 * (k & 1) + l]; @@ int lo = b[64 * h + 32 * (k >> 1) + l];
q6_k-high-bits @@ ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4) - 32; @@ ((b[128 + 32 * h + l] >> k) & 3) << 4) - 32;
q6_k-no-offset @@ ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4) - 32; @@ ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
q6_k-scale-unsigned @@ float sc = (float)(signed char)b[192 + 8 * h + 2 * k + (l >> 4)]; @@ float sc = (float)b[192 + 8 * h + 2 * k + (l >> 4)];
q6_k-scale-index @@ float sc = (float)(signed char)b[192 + 8 * h + 2 * k + (l >> 4)]; @@ float sc = (float)(signed char)b[192 + 8 * h + k + (l >> 4)];
matmul_q-row-bound @@ if (o >= out) return;\n    int nb = in / Q::QK; @@ if (o > out) return;\n    int nb = in / Q::QK;
matmul_q-last-block @@ for (int b = 0; b < nb; b++) { @@ for (int b = 0; b < nb - 1; b++) {
matmul_q-row-stride @@ const u8* wr = w + (i64)o * nb * Q::BYTES; @@ const u8* wr = w + (i64)o * (nb - 1) * Q::BYTES;
matmul_q-activation-index @@ xb[(i64)k * in + 32 * j]; @@ xb[(i64)k * in + 8 * j];
matmul_q-reduce-rows @@ xb[(i64)k * in + 32 * j];\n            }\n        }\n#pragma unroll\n        for (int k = 0; k < MM_ROWS; k++)\n            if (k < nr) @@ xb[(i64)k * in + 32 * j];\n            }\n        }\n#pragma unroll\n        for (int k = 0; k < MM_ROWS; k++)\n            if (k < nr - 1)
sync-matmul_t_q-publish @@ __syncthreads();\n        if (s == 0) { @@ if (s == 0) {
sync-matmul_t_q-reuse @@ t += part[p][k][lane];\n                y[(i64)(r0 + k) * out + c] = t;\n            }\n        }\n        __syncthreads(); @@ t += part[p][k][lane];\n                y[(i64)(r0 + k) * out + c] = t;\n            }\n        }
matmul_t_q-row-stride @@ i64 rowBytes = (i64)(out / Q::QK) * Q::BYTES; @@ i64 rowBytes = (i64)(out / Q::QK - 1) * Q::BYTES;
matmul_t_q-block @@ const u8* wb = w + (i64)(c0 / Q::QK) * Q::BYTES; @@ const u8* wb = w + (i64)(c0 / 32) * Q::BYTES;
matmul_t_q-group @@ int j = (c0 % Q::QK) / 32; @@ int j = 0;
matmul_t_q-inner-bound @@ for (int i = s; i < in; i += MMT_SPLIT) {\n            float wv = Q::at @@ for (int i = s; i < in - 1; i += MMT_SPLIT) {\n            float wv = Q::at
matmul_t_q-split-sum @@ for (int p = 0; p < MMT_SPLIT; p++) @@ for (int p = 1; p < MMT_SPLIT; p++)
dequant-bound @@ g < blocks; g += @@ g < blocks - 1; g +=
dequant-store @@ dst[g * Q::QK + 32 * j + lane] = Q::at( @@ dst[g * Q::QK + 8 * j + lane] = Q::at(
EOF
)

# Refresh the copy: tracked and untracked (not ignored) files of the tree.
rm -rf "$copy"
mkdir -p "$copy"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$copy" -xf -
orig=$copy/cuda/kernels.cu.orig
cp "$copy/cuda/kernels.cu" "$orig"

# apply FROM TO: writes the mutated kernels.cu; fails unless FROM occurs once.
apply() {
	FROM=$1 TO=$2 perl -0777 -e '
		my $src = do { local $/; <STDIN> };
		my ($from, $to) = ($ENV{FROM}, $ENV{TO});
		s/\\n/\n/g for $from, $to;
		my $n = () = $src =~ /\Q$from\E/g;
		die "occurs $n times\n" if $n != 1;
		$src =~ s/\Q$from\E/$to/;
		print $src;
	' <"$orig" >"$copy/cuda/kernels.cu"
}

# first_failure LOG: the first failing test (deepest name) and whether the
# emulator itself reported a fault, race or barrier error.
first_failure() {
	local t e
	t=$(grep -oE -- '--- FAIL: [^ ]+' "$1" | awk '{print $3}' | awk '{ print length, $0 }' | sort -rn | head -n 1 | cut -d' ' -f2-)
	e=$(grep -oE 'emucuda: [a-z0-9_]+ block .*' "$1" | head -n 1 | sed -E 's/.*\): //' | cut -c1-70)
	[ -z "$t" ] && t=$(grep -m1 -E 'panic|build failed|FAIL' "$1" | cut -c1-80)
	echo "${t:-?}${e:+; emulator: $e}"
}

table=$work/results.md
{
	echo "| # | mutant | edit | caught | how |"
	echo "|---|---|---|---|---|"
} >"$table"
i=0
caught=0
survived=()
start=$(date +%s)
while IFS= read -r line; do
	[ -z "$line" ] && continue
	name=${line%% @@ *}
	if [ -n "${MUTANTS:-}" ] && [[ " $MUTANTS " != *" $name "* ]]; then continue; fi
	rest=${line#* @@ }
	from=${rest%% @@ *}
	to=${rest#* @@ }
	i=$((i + 1))
	if ! err=$(apply "$from" "$to" 2>&1); then
		echo "mutant $name does not apply to cuda/kernels.cu: $err"
		echo "| $i | $name | does not apply ($err) | - | - |" >>"$table"
		survived+=("$name(not applied)")
		continue
	fi
	edit="\`$(echo "$from" | sed 's/\\n */ /g; s/|/\\|/g')\` → \`$(echo "$to" | sed 's/\\n */ /g; s/|/\\|/g')\`"
	result="no"
	how=""
	t0=$(date +%s)
	for s in $schedules; do
		log=$work/$name-${s//[^a-z0-9]/_}.log
		env=(EMU_SCHEDULE=$s)
		[ "$s" = poison ] && env=(EMU_SCHEDULE=forward EMU_POISON=0x7f)
		if (cd "$copy" && env "${env[@]}" timeout 300 $GO test -count=1 -failfast -v -run '^TestGPU' ./cuda) >"$log" 2>&1; then
			continue
		fi
		rc=$?
		result="yes ($s)"
		how=$(first_failure "$log")
		[ $rc = 124 ] && how="timed out (hang)"
		break
	done
	if [ "$result" = no ]; then
		log=$work/$name-e2e.log
		if (cd "$copy" && timeout 900 $GO test -count=1 -v -run '^TestEmuRun(Quant)?MatchesHost$' ./cmd/offload) >"$log" 2>&1; then
			how="survived all schedules; end to end tokens equal host"
		else
			how="survived the device tests; end to end FAILED: $(first_failure "$log")"
		fi
		survived+=("$name")
	else
		caught=$((caught + 1))
	fi
	printf '%-28s %-18s %4ss  %s\n' "$name" "$result" "$(($(date +%s) - t0))" "$how"
	echo "| $i | $name | $edit | $result | $how |" >>"$table"
done <<<"$mutants"
cp "$orig" "$copy/cuda/kernels.cu"
echo
echo "mutants: $caught of $i caught in $(($(date +%s) - start))s; survived: ${survived[*]:-none}"
echo "table: $table"
