# offload: the two commands a new user needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/offload
PROMPT  ?= Once upon a time
N       ?= 64
FUZZTIME ?= 4s

.PHONY: all build run model test unit emu vet race fuzz bench gpu-bin mutants clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/offload

model:
	scripts/get-model.sh

# run: build, fetch the default model (stories260K), and generate with the
# default decoding (Sirius over a Griffin-sparse model).
run: build model
	$(BIN) run --prompt "$(PROMPT)" -n $(N)

# test: formatting, vet, every unit test, the concurrent packages under the
# race detector, every CUDA kernel on the emulator under each schedule, then
# every fuzz target for $(FUZZTIME).
test: vet unit race emu fuzz

vet:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...

# Tests that need a CUDA device (TestGPU*, TestEmu*) are left to `emu`,
# which runs them on the emulator once per schedule.
EMU_TESTS := ^Test(GPU|Emu)

unit: model
	$(GO) test -count=1 -skip '$(EMU_TESTS)' ./...

# emu: execute every CUDA kernel on the CPU emulator (../shared/emucuda)
# under the forward, reverse and random schedules and with EMU_POISON=0x7f:
# the CUDA backend's conformance suite and GPU tests, and `run --device
# cuda` on stories260K against the host backend's tokens.
emu:
	GO=$(GO) scripts/emu-test.sh


# mutants: apply known-bad edits to a copy of the kernels and report which
# ones the emulated suite catches (minutes; not part of `test`).
mutants:
	GO=$(GO) scripts/mutants.sh

# race: the packages that run goroutines (the engine's pipeline, the device
# streams and kernel pool, the corrector, the server) under the race
# detector, with -short. Numerical tests that run in `unit` and take minutes
# under the detector without exercising any concurrency of their own are
# skipped here (RACE_SKIP), as is the emulated copy of TestQuantizedOracle's
# logits check, which `emu` runs. About 2 minutes on 2 cores.
RACE_PKGS := ./engine/... ./device/... ./corrector/... $(if $(wildcard server),./server/...)
RACE_SKIP := ^(TestQuantizedOracle|TestEmuQuantizedOracle|TestMatMulVsRef)$$
race: model
	$(GO) test -race -short -count=1 -skip '$(RACE_SKIP)' $(RACE_PKGS)

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

bench: build model
	$(BIN) bench -n 32

# gpu-bin: the static binaries scripts/gpu-check.sh runs on a GPU machine.
gpu-bin:
	CGO_ENABLED=0 $(GO) build -o bin/offload ./cmd/offload
	CGO_ENABLED=0 $(GO) test -c -o bin/cuda.test ./cuda

clean:
	rm -rf bin .emucuda
