#!/usr/bin/env bash
# get-model.sh: put the default model, stories260K.gguf (llama.cpp's own test
# model, Karpathy's tinyllamas, MIT), in models/ after checking its sha256.
# It looks first in a local mirror ($OFFLOAD_MODEL_MIRROR, then
# ../shared/models/stories260K beside the repository), then downloads it from
# Hugging Face.
set -euo pipefail
cd "$(dirname "$0")/.."

name=stories260K.gguf
sha=270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d
url=https://huggingface.co/ggml-org/tiny-llamas/resolve/main/stories260K.gguf
dst=models/$name

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

if check "$dst"; then
	echo "get-model: $dst is present and verified"
	exit 0
fi
mkdir -p models
tmp=$(mktemp "models/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
for dir in "${OFFLOAD_MODEL_MIRROR:-}" ../shared/models/stories260K; do
	if [ -n "$dir" ] && check "$dir/$name"; then
		cp "$dir/$name" "$tmp"
		mv "$tmp" "$dst"
		echo "get-model: copied $dst from $dir (sha256 verified)"
		exit 0
	fi
done
echo "get-model: downloading $url"
if command -v curl >/dev/null; then
	curl -fL --retry 3 -o "$tmp" "$url"
else
	wget -O "$tmp" "$url"
fi
if ! check "$tmp"; then
	echo "get-model: $url does not have the expected sha256 $sha" >&2
	exit 1
fi
mv "$tmp" "$dst"
echo "get-model: downloaded $dst (sha256 verified)"
