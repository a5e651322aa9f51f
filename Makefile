# offload: the two commands a new user needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/offload
PROMPT  ?= Once upon a time
N       ?= 64
FUZZTIME ?= 4s

.PHONY: all build run model test unit vet fuzz bench gpu-bin clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/offload

model:
	scripts/get-model.sh

# run: build, fetch the default model (stories260K), and generate with the
# default decoding (Sirius over a Griffin-sparse model).
run: build model
	$(BIN) run --prompt "$(PROMPT)" -n $(N)

# test: formatting, vet, every unit test, then every fuzz target for $(FUZZTIME).
test: vet unit fuzz

vet:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...

unit: model
	$(GO) test -count=1 ./...

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench: build model
	$(BIN) bench -n 32

# gpu-bin: the static binaries scripts/gpu-check.sh runs on a GPU machine.
gpu-bin:
	CGO_ENABLED=0 $(GO) build -o bin/offload ./cmd/offload
	CGO_ENABLED=0 $(GO) test -c -o bin/cuda.test ./cuda

clean:
	rm -rf bin
