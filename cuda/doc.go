// Package cuda is the CUDA backend of device.Device for NVIDIA GPUs.
//
// It loads the driver (libcuda.so.1), NVRTC and cuBLAS at run time with
// purego, so the module builds with CGO_ENABLED=0 and without the CUDA
// toolkit; a machine without a GPU gets one clear error from Open and uses
// the host backend instead. Kernels are CUDA C (kernels.cu, embedded),
// compiled at start by NVRTC for the card's architecture and cached on disk.
// Matrix products with few activation rows (decoding, Sirius window checks)
// run on our own kernels; larger batches (prefill) go through cuBLAS with
// fp32 accumulation. Weights may be f32, f16, bf16 or one of ggml's
// block-quantized types (Q4_0 ... Q8_0, Q2_K ... Q6_K): our kernels
// dequantize them in registers, exactly as ggml does, and accumulate in f32
// in the same batch-independent order as the float kernels; for cuBLAS,
// panels of rows are dequantized to f32 first.
//
// Memory outside Capacity: the CUDA context, the kernel module, cuBLAS
// handles and workspaces, and a scratch per stream (scratchBytes, only when
// a large batch meets half-precision or quantized weights) live outside the
// budget Alloc enforces. That is why Capacity defaults to free memory minus
// a margin (capacityMargin).
//
// # Testing without a GPU
//
// The tests that need a device (TestGPU*: the device conformance suite
// with pinned and with pageable host memory, batch invariance, the cuBLAS
// path, the logits kernels, the quantized decoders bit for bit) open a real GPU when there is one and
// otherwise the CPU emulator of the driver, NVRTC and cuBLAS in
// ../shared/emucuda (internal/emu finds or builds it), which executes
// every kernel with each CUDA thread a fiber: an access past any
// allocation faults and names the kernel and thread, fresh device and
// shared memory hold a poison byte, a barrier not reached by the whole
// block is an error, and a missing barrier makes results depend on the
// order of warps and lanes. `make test` runs them under the forward,
// reverse and random schedules and with memory poisoned to 3.4e38
// (scripts/emu-test.sh), and fails if a kernel of kernels.cu never ran.
// What the emulator cannot tell (stream overlap, speed, the GPU's memory
// model) is for scripts/gpu-check.sh on a real card; see the README.
//
// # Mutation check
//
// scripts/mutants.sh (`make mutants`) applies each of 79 known-bad edits
// to a copy of kernels.cu, alone, and runs the TestGPU* tests on the
// emulator under the forward, reverse, random:1 and poison schedules until
// one fails. The edits, spelled out in the script, remove each
// __syncthreads in turn, move bounds by one, reduce over the wrong lanes,
// warps, rows or partial sums, break attention's multi-tile path (the
// barrier at the end of a tile, the sign of the rescaling factor, the
// rescaling of the running sum), and break the quantized decoders (a wrong
// nibble half, bit, byte or shift; a wrong scale or min index, including
// get_scale_min_k4's high bits and Q3_K's packed scales; d and dmin
// swapped; a lost sign of int8 quants and scales or of the K-quant min; a
// missing Q*_0/Q6_K offset; Q3_K's hmask read the wrong way) and the
// quantized products, plain and transposed (each barrier, the row stride,
// the block and group of a column, the last block or row, the activation
// index, the partial sums, the dequantization panel's bound and store).
// Result on the emulator, 77 caught, 2 survivors that change no result:
//
//	mutant                       caught    first failing test (Suite = TestGPUDeviceSuite/pinned=true)
//	sync-block_sum-before-write  forward   Suite/Kernel/Attention/heads=8/kv=4/hd=64/seq=600/pos0=520/n=3
//	sync-block_sum-before-read   forward   Suite/Kernel/RMSNorm/f32/n=1/cols=8/eps=1e-05/inplace=false
//	sync-block_max-before-write  no        -- equivalent, see below
//	sync-block_max-before-read   forward   Suite/Kernel/Attention/heads=8/kv=4/hd=64/seq=600/pos0=520/n=3
//	sync-matmul_t-publish        forward   Suite/Kernel/MatMulT/f32/n=1/in=16/out=8
//	sync-matmul_t-reuse          reverse   Suite/Kernel/MatMulT/f32/n=5/in=16/out=8
//	sync-attention-scores        random:1  TestGPUBatchInvariance (poison: Suite/Kernel/Attention, first case)
//	sync-attention-tile-end      forward   Suite/Kernel/AttentionLong/heads=4/kv=2/hd=64/seq=1030/pos0=1022/n=3
//	sync-argmax                  forward   TestGPUExtras/n=5/vocab=32000
//	attention-rescale-sign       forward   Suite/Kernel/AttentionLong/heads=4/kv=2/hd=64/seq=2053/pos0=2046/n=2
//	attention-sum-not-rescaled   forward   Suite/Kernel/AttentionLong/heads=4/kv=2/hd=64/seq=2053/pos0=2046/n=2
//	attention-tile-bound         forward   Suite/Kernel/Attention/heads=4/kv=4/hd=8/seq=16/pos0=0/n=1
//	attention-causal-bound       forward   Suite/Kernel/Attention/heads=4/kv=4/hd=8/seq=16/pos0=0/n=1
//	warp_sum-lanes               forward   Suite/Kernel/MatMul/f32/n=1/in=67/out=37
//	warp_sum-shfl_down           no        -- equivalent, see below
//	warp_max-lanes               forward   TestGPUExtras/n=5/vocab=32000
//	block_sum-warp-count         forward   Suite/Kernel/RMSNorm/f32/n=1/cols=1024/eps=1e-05/inplace=false
//	argmax-lanes                 forward   TestGPUExtras/n=5/vocab=32000
//	argmax-last-warp             forward   TestGPUArgmaxPositions
//	argmax-tie                   forward   TestGPUExtras/n=5/vocab=32000
//	matmul-row-bound             forward   Suite/Kernel/MatMul/f32/n=1/in=67/out=37; the emulator faults reading past w
//	matmul-inner-bound           forward   Suite/Kernel/MatMul/f32/n=1/in=16/out=8
//	matmul_t-col-bound           forward   Suite/Kernel/MatMulT/f32/n=1/in=16/out=8
//	matmul_t-split-sum           forward   Suite/Kernel/MatMulT/f32/n=1/in=16/out=8
//	rmsnorm-mean                 forward   Suite/Kernel/RMSNorm/f32/n=1/cols=8/eps=1e-05/inplace=false
//	rope-bound                   forward   Suite/Kernel/RoPE/interleaved/heads=1/hd=8/n=1/pos0=0/theta=10000
//	gather_rows-bound            forward   Suite/Stream/Errors
//	gather_cols_t-bound          forward   Suite/Stream/Errors
//	silu_mul-stride              forward   Suite/Kernel/SiLUMul/3x172/inplace=true
//	softmax-last-element         forward   TestGPUExtras/n=5/vocab=32000
//	loglik-token-bound           forward   TestGPUExtras/n=5/vocab=32000
//	matmul-reduce-rows           forward   Suite/Kernel/MatMul/f32/n=1/in=16/out=8
//	q4_0-nibble-half             forward   Suite/Kernel/MatMulQuant/q4_0
//	q4_0-no-offset               forward   Suite/Kernel/MatMulQuant/q4_0
//	q4_0-byte                    forward   Suite/Kernel/MatMulQuant/q4_0
//	q4_1-min-sign                forward   Suite/Kernel/MatMulQuant/q4_1
//	q4_1-scale-index             forward   Suite/Kernel/MatMulQuant/q4_1
//	q5_0-qh-byte                 forward   Suite/Kernel/MatMulQuant/q5_0
//	q5_0-no-offset               forward   Suite/Kernel/MatMulQuant/q5_0
//	q5_1-qh-bit                  forward   Suite/Kernel/MatMulQuant/q5_1
//	q5_1-quants-offset           forward   Suite/Kernel/MatMulQuant/q5_1
//	q8_0-unsigned                forward   Suite/Kernel/MatMulQuant/q8_0
//	q8_0-byte                    forward   Suite/Kernel/MatMulQuant/q8_0
//	q2_k-min-nibble              forward   Suite/Kernel/MatMulQuant/q2_k
//	q2_k-scale-group             forward   Suite/Kernel/MatMulQuant/q2_k
//	q2_k-shift                   forward   Suite/Kernel/MatMulQuant/q2_k
//	q2_k-d-dmin                  forward   Suite/Kernel/MatMulQuant/q2_k
//	q3_k-hmask-sense             forward   Suite/Kernel/MatMulQuant/q3_k
//	q3_k-hmask-bit               forward   Suite/Kernel/MatMulQuant/q3_k
//	q3_k-scale-high              forward   Suite/Kernel/MatMulQuant/q3_k
//	q3_k-scale-low               forward   Suite/Kernel/MatMulQuant/q3_k
//	q3_k-scale-bias              forward   Suite/Kernel/MatMulQuant/q3_k
//	k4-min-low                   forward   Suite/Kernel/MatMulQuant/q4_k
//	k4-min-high                  forward   Suite/Kernel/MatMulQuant/q4_k
//	k4-scale-high                forward   Suite/Kernel/MatMulQuant/q4_k
//	q4_k-nibble-half             forward   Suite/Kernel/MatMulQuant/q4_k
//	q4_k-min-sign                forward   Suite/Kernel/MatMulQuant/q4_k
//	q4_k-chunk                   forward   Suite/Kernel/MatMulQuant/q4_k
//	q5_k-high-bit                forward   Suite/Kernel/MatMulQuant/q5_k
//	q5_k-quants-offset           forward   Suite/Kernel/MatMulQuant/q5_k
//	q6_k-low-half                forward   Suite/Kernel/MatMulQuant/q6_k
//	q6_k-high-bits               forward   Suite/Kernel/MatMulQuant/q6_k
//	q6_k-no-offset               forward   Suite/Kernel/MatMulQuant/q6_k
//	q6_k-scale-unsigned          forward   Suite/Kernel/MatMulQuant/q6_k
//	q6_k-scale-index             forward   Suite/Kernel/MatMulQuant/q6_k
//	matmul_q-row-bound           forward   Suite/Kernel/MatMulQuant/q4_0; the emulator faults reading past w
//	matmul_q-last-block          forward   Suite/Kernel/MatMulQuant/q4_0
//	matmul_q-row-stride          forward   Suite/Kernel/MatMulQuant/q4_0
//	matmul_q-activation-index    forward   Suite/Kernel/MatMulQuant/q2_k
//	matmul_q-reduce-rows         forward   Suite/Kernel/MatMulQuant/q4_0
//	sync-matmul_t_q-publish      forward   Suite/Kernel/MatMulQuant/q4_0
//	sync-matmul_t_q-reuse        reverse   Suite/Kernel/MatMulQuant/q4_0
//	matmul_t_q-row-stride        forward   Suite/Kernel/MatMulQuant/q4_0
//	matmul_t_q-block             forward   Suite/Kernel/MatMulQuant/q2_k; the emulator faults reading past w
//	matmul_t_q-group             forward   Suite/Kernel/MatMulQuant/q2_k
//	matmul_t_q-inner-bound       forward   Suite/Kernel/MatMulQuant/q4_0
//	matmul_t_q-split-sum         forward   Suite/Kernel/MatMulQuant/q4_0
//	dequant-bound                forward   Suite/Kernel/MatMulQuant/q4_0
//	dequant-store                forward   Suite/Kernel/MatMulQuant/q2_k
//
// The survivors are equivalent in these kernels. sync-block_max-before-write
// removes block_max's leading barrier, which only guards red against a
// block_sum or block_max still reading it; every block_max here is either
// the first reduction of its kernel (softmax_rows, loglik_rows) or follows
// a __syncthreads that already separates it from the previous reduction
// (attention's score barrier). warp_sum-shfl_down turns the butterfly into
// a shift-down reduction, after which only lane 0 holds the total, and lane
// 0 is the only lane whose warp_sum result any caller reads. Both were also
// run end to end (TestEmuRunMatchesHost and, unsharded, every run of
// TestEmuRunQuantMatchesHost): tokens equal the host backend's.
//
// sync-attention-scores shows why the schedules and the poison run are all
// needed: without the barrier after the scores, threads take the tile's
// maximum over scores other warps have not written yet. Under the default
// poison (NaN, which fmaxf skips) the maximum merely misses some scores,
// and as it only stabilises the softmax, results move by rounding alone;
// forward and reverse miss the same scores in a batched and a single-row
// call, so even the bit-exact batch invariance holds. The random schedule
// misses different ones and breaks it; poison 3.4e38 becomes the maximum
// and breaks attention outright.
package cuda
