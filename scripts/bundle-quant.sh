#!/usr/bin/env bash
# bundle-quant.sh: what requantizing a quantized model's down columns into
# neuron bundles costs (issue 11). For each quantized stories260K fixture it
# bundles the file three ways (down columns exact in F32, a control; at the
# down matrix's own type; at Q8_0) and runs `offload eval --reference`
# against the untouched file and against the F32 original: how many dense
# tokens equal the reference's dense output, and the NLL of the dense output
# under the reference; and `offload bench --modes sparse` for the bytes a
# sparse step moves when every layer streams (the Griffin rows packed once
# per sequence). Prints a markdown table. Needs jq and ../shared (or
# OFFLOAD_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${OFFLOAD_SHARED:-../shared}
q=$shared/models/stories260K-q
tok=$shared/models/stories260K/tok512.bin
prompts=scripts/prompts/stories.txt
n=${N:-64}
bin=${BIN:-bin/offload}
go build -o "$bin" ./cmd/offload
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
eval_json() { # model reference -> json
	"$bin" eval --model "$1" --reference "$2" --tokenizer "$tok" --prompts "$prompts" -n "$n" \
		--device host --json 2>/dev/null
}
sparse_bytes() { # model -> bytes per sparse token, every layer streamed
	"$bin" bench --model "$1" --modes sparse -n 17 --prompt-len 8 --device host --json 2>/dev/null |
		jq -r '.results[0].bytes_per_token/1024|round'
}
pct() { jq -r '.mean.dense_agree*100|round'; }
nll() { jq -r '.mean.dense_nll*1000|round/1000'; }
echo "| file | down columns | file bytes | sparse bytes/token | dense = untouched | NLL under untouched | dense = F32 | NLL under F32 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for typ in ${TYPES:-Q8_0 Q6_K Q5_K_M Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 Q3_K_M Q2_K}; do
	src=$q/stories260K-pad256-$typ.gguf
	for down in untouched f32 same q8_0; do
		m=$src
		if [ "$down" != untouched ]; then
			m=$tmp/$typ-$down.gguf
			"$bin" convert --model "$src" --bundle-down "$down" -o "$m" 2>/dev/null
		fi
		a=$(eval_json "$m" "$src")
		b=$(eval_json "$m" "$q/stories260K-pad256-F32.gguf")
		sp=$(sparse_bytes "$m")
		echo "| $typ | $down | $(stat -c %s "$m") | $sp KiB | $(pct <<<"$a")% | $(nll <<<"$a") | $(pct <<<"$b")% | $(nll <<<"$b") |"
	done
done
echo
f=$(eval_json "$q/stories260K-pad256-F32.gguf" "$q/stories260K-pad256-F32.gguf")
echo "F32 itself: NLL of its dense output $(nll <<<"$f")"
