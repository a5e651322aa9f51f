// Kernels of the CUDA backend, compiled at start by NVRTC (see kernels.go).
//
// No headers: NVRTC without the CUDA toolkit has no cuda_fp16.h/cuda_bf16.h,
// so half-precision values travel as 16-bit integers and are converted here,
// with PTX cvt instructions for f16 and bit operations for bf16.
//
// Every reduction runs in a fixed order that depends only on the shape of
// one row, never on how many rows a call holds: a window check over 16
// positions then computes bit-identical results to 16 single-token steps,
// which keeps Sirius with strict acceptance token-exact against dense
// decoding (DESIGN.md invariant 4).
//
// Kernel signatures are mirrored by kernelSigs in kernels.go; a test parses
// the PTX NVRTC emits and checks both agree.

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define F32_INF __int_as_float(0x7f800000)

// Error codes written to a stream's error word (see errflag in kernels.go).
#define ERR_INDEX 1

__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }

__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Round to nearest even; NaNs stay NaN (quiet).
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (u16)(u >> 16);
}

// Weight element accessors: weights are widened exactly to f32.
struct WF32 {
    typedef float T;
    static __device__ __forceinline__ float get(const float* p, i64 i) { return p[i]; }
};
struct WF16 {
    typedef u16 T;
    static __device__ __forceinline__ float get(const u16* p, i64 i) { return f16_to_f32(p[i]); }
};
struct WBF16 {
    typedef u16 T;
    static __device__ __forceinline__ float get(const u16* p, i64 i) { return bf16_to_f32(p[i]); }
};

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// block_sum / block_max: every thread gets the result. red must hold 32
// floats; the leading __syncthreads makes back-to-back calls safe.
__device__ float block_sum(float v, float* red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < nw; i++) t += red[i];
    return t;
}

__device__ float block_max(float v, float* red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = -F32_INF;
    for (int i = 0; i < nw; i++) t = fmaxf(t, red[i]);
    return t;
}

__device__ __forceinline__ void raise_error(int* err, int code, int value) {
    if (atomicCAS(err, 0, code) == 0) err[1] = value;
}

// ---------------------------------------------------------------------------
// Products. MM_ROWS activation rows share each weight read.

#define MM_ROWS 4

// y[n,out] = x[n,in] · w[out,in]ᵀ. One warp per output row o; lane l sums
// elements i ≡ l (mod 32), then a butterfly reduction.
template <class W>
__device__ void matmul_impl(float* __restrict__ y, const float* __restrict__ x,
                            const typename W::T* __restrict__ w, int n, int in, int out) {
    int o = (int)((blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (o >= out) return;
    const typename W::T* wr = w + (i64)o * in;
    for (int r0 = 0; r0 < n; r0 += MM_ROWS) {
        int nr = min(MM_ROWS, n - r0);
        const float* xr = x + (i64)r0 * in;
        float acc[MM_ROWS];
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++) acc[k] = 0.0f;
        for (int i = lane; i < in; i += 32) {
            float wv = W::get(wr, i);
#pragma unroll
            for (int k = 0; k < MM_ROWS; k++)
                if (k < nr) acc[k] += wv * xr[(i64)k * in + i];
        }
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++)
            if (k < nr) acc[k] = warp_sum(acc[k]); // nr is warp-uniform
        if (lane == 0)
            for (int k = 0; k < nr; k++) y[(i64)(r0 + k) * out + o] = acc[k];
    }
}

extern "C" __global__ void matmul_f32(float* y, const float* x, const float* w, int n, int in, int out) {
    matmul_impl<WF32>(y, x, w, n, in, out);
}
extern "C" __global__ void matmul_f16(float* y, const float* x, const u16* w, int n, int in, int out) {
    matmul_impl<WF16>(y, x, w, n, in, out);
}
extern "C" __global__ void matmul_bf16(float* y, const float* x, const u16* w, int n, int in, int out) {
    matmul_impl<WBF16>(y, x, w, n, in, out);
}

// y[n,out] = x[n,in] · w[in,out]. A block of 256 threads owns 32 output
// columns; its 8 warps split the inner dimension (warp s sums i ≡ s mod 8)
// and the 8 partial sums are added in order through shared memory.
#define MMT_COLS 32
#define MMT_SPLIT 8

template <class W>
__device__ void matmul_t_impl(float* __restrict__ y, const float* __restrict__ x,
                              const typename W::T* __restrict__ w, int n, int in, int out) {
    __shared__ float part[MMT_SPLIT][MM_ROWS][MMT_COLS];
    int lane = threadIdx.x & 31, s = threadIdx.x >> 5;
    int c = blockIdx.x * MMT_COLS + lane;
    for (int r0 = 0; r0 < n; r0 += MM_ROWS) {
        int nr = min(MM_ROWS, n - r0);
        const float* xr = x + (i64)r0 * in;
        float acc[MM_ROWS];
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++) acc[k] = 0.0f;
        if (c < out) {
            for (int i = s; i < in; i += MMT_SPLIT) {
                float wv = W::get(w, (i64)i * out + c);
#pragma unroll
                for (int k = 0; k < MM_ROWS; k++)
                    if (k < nr) acc[k] += wv * xr[(i64)k * in + i];
            }
        }
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++) part[s][k][lane] = acc[k];
        __syncthreads();
        if (s == 0 && c < out) {
            for (int k = 0; k < nr; k++) {
                float t = 0.0f;
                for (int j = 0; j < MMT_SPLIT; j++) t += part[j][k][lane];
                y[(i64)(r0 + k) * out + c] = t;
            }
        }
        __syncthreads();
    }
}

extern "C" __global__ void matmul_t_f32(float* y, const float* x, const float* w, int n, int in, int out) {
    matmul_t_impl<WF32>(y, x, w, n, in, out);
}
extern "C" __global__ void matmul_t_f16(float* y, const float* x, const u16* w, int n, int in, int out) {
    matmul_t_impl<WF16>(y, x, w, n, in, out);
}
extern "C" __global__ void matmul_t_bf16(float* y, const float* x, const u16* w, int n, int in, int out) {
    matmul_t_impl<WBF16>(y, x, w, n, in, out);
}

// ---------------------------------------------------------------------------
// Block-quantized weights (ggml's layouts, ggml-common.h). A row of w is a
// whole number of blocks; a block starts 2-byte aligned (tensor offsets are
// whole halves, every block size is even), so scales are read as u16 and
// everything else as bytes.
//
// Each format is a struct with QK (elements per block), BYTES (bytes per
// block) and at(b, j, l): element 32j + l (l < 32) of block b, dequantized
// exactly as ggml's dequantize_row_* computes it: every product that then
// meets an addition or subtraction is __fmul_rn, which --fmad=true never
// fuses into a multiply-add (a fused one rounds once, ggml's C twice). Lane
// l of a warp decodes the elements i ≡ l (mod 32), as in matmul_impl.

typedef unsigned char u8;

__device__ __forceinline__ float ldh(const u8* p) { return f16_to_f32(*(const u16*)p); }

// 32-element blocks (j is 0).
struct Q4_0 { // d, qs[16]: element l < 16 is the low nibble of qs[l], l >= 16 the high one of qs[l-16]
    enum { QK = 32, BYTES = 18 };
    static __device__ __forceinline__ float at(const u8* b, int, int l) {
        int q = b[2 + (l & 15)];
        q = (l < 16 ? q & 15 : q >> 4) - 8;
        return (float)q * ldh(b);
    }
};
struct Q4_1 { // d, m, qs[16]
    enum { QK = 32, BYTES = 20 };
    static __device__ __forceinline__ float at(const u8* b, int, int l) {
        int q = b[4 + (l & 15)];
        q = l < 16 ? q & 15 : q >> 4;
        return __fmul_rn((float)q, ldh(b)) + ldh(b + 2);
    }
};
// Q5: element l's fifth bit is bit l of the 32-bit qh.
struct Q5_0 { // d, qh[4], qs[16]
    enum { QK = 32, BYTES = 22 };
    static __device__ __forceinline__ float at(const u8* b, int, int l) {
        int q = b[6 + (l & 15)];
        q = (l < 16 ? q & 15 : q >> 4) | ((b[2 + (l >> 3)] >> (l & 7)) & 1) << 4;
        return (float)(q - 16) * ldh(b);
    }
};
struct Q5_1 { // d, m, qh[4], qs[16]
    enum { QK = 32, BYTES = 24 };
    static __device__ __forceinline__ float at(const u8* b, int, int l) {
        int q = b[8 + (l & 15)];
        q = (l < 16 ? q & 15 : q >> 4) | ((b[4 + (l >> 3)] >> (l & 7)) & 1) << 4;
        return __fmul_rn((float)q, ldh(b)) + ldh(b + 2);
    }
};
struct Q8_0 { // d, qs[32] int8
    enum { QK = 32, BYTES = 34 };
    static __device__ __forceinline__ float at(const u8* b, int, int l) {
        return (float)(signed char)b[2 + l] * ldh(b);
    }
};

// 256-element super-blocks (j = 0..7).

// Q2_K: scales[16], qs[64], d, dmin. Element 128h + 32s + l has bits 2s..2s+1
// of qs[32h + l]; its group 8h + 2s + l/16 has a 4-bit scale (low nibble of
// scales[group]) and a 4-bit min (high nibble).
struct Q2_K {
    enum { QK = 256, BYTES = 84 };
    static __device__ __forceinline__ float at(const u8* b, int j, int l) {
        float d = ldh(b + 80), dmin = ldh(b + 82);
        int h = j >> 2, s = j & 3;
        int sc = b[8 * h + 2 * s + (l >> 4)];
        int q = (b[16 + 32 * h + l] >> (2 * s)) & 3;
        float dl = d * (float)(sc & 15), ml = __fmul_rn(dmin, (float)(sc >> 4));
        return __fmul_rn(dl, (float)q) - ml;
    }
};

// Q3_K: hmask[32], qs[64], scales[12], d. The low two bits as in Q2_K; the
// high bit of element 128h + 32s + l is bit 4h + s of hmask[l], and a clear
// bit means 4 less. Group g's 6-bit scale (minus 32): low four bits in a
// nibble of scales[g % 8] (low for g < 8), high two in scales[8 + g % 4]
// at bit 2(g / 4).
struct Q3_K {
    enum { QK = 256, BYTES = 110 };
    static __device__ __forceinline__ float at(const u8* b, int j, int l) {
        float d = ldh(b + 108);
        const u8* sc = b + 96;
        int hm = b[l];
        int h = j >> 2, s = j & 3;
        int g = 8 * h + 2 * s + (l >> 4);
        int lo = g < 8 ? sc[g] & 15 : sc[g - 8] >> 4;
        int hi = (sc[8 + (g & 3)] >> (2 * (g >> 2))) & 3;
        int q = (b[32 + 32 * h + l] >> (2 * s)) & 3;
        if (!((hm >> (4 * h + s)) & 1)) q -= 4;
        float dl = d * (float)((lo | hi << 4) - 32);
        return dl * (float)q;
    }
};

// Q4_K/Q5_K: group g (of 8, 32 elements each) has a 6-bit scale and min
// (ggml's get_scale_min_k4).
__device__ __forceinline__ void k4_scale_min(const u8* q, int g, int* sc, int* m) {
    if (g < 4) {
        *sc = q[g] & 63;
        *m = q[g + 4] & 63;
    } else {
        *sc = (q[g + 4] & 15) | ((q[g - 4] >> 6) << 4);
        *m = (q[g + 4] >> 4) | ((q[g] >> 6) << 4);
    }
}

// Q4_K: d, dmin, scales[12], qs[128]. Element 64c + 32k + l is the low
// (k = 0) or high (k = 1) nibble of qs[32c + l], in group 2c + k.
struct Q4_K {
    enum { QK = 256, BYTES = 144 };
    static __device__ __forceinline__ float at(const u8* b, int j, int l) {
        float d = ldh(b), dmin = ldh(b + 2);
        int c = j >> 1, k = j & 1, sc, m;
        k4_scale_min(b + 4, j, &sc, &m);
        int q = b[16 + 32 * c + l];
        q = k ? q >> 4 : q & 15;
        float dl = d * (float)sc, ml = __fmul_rn(dmin, (float)m);
        return __fmul_rn(dl, (float)q) - ml;
    }
};

// Q5_K: d, dmin, scales[12], qh[32], qs[128]. Q4_K plus a fifth bit: element
// 32j + l has it in bit j of qh[l].
struct Q5_K {
    enum { QK = 256, BYTES = 176 };
    static __device__ __forceinline__ float at(const u8* b, int j, int l) {
        float d = ldh(b), dmin = ldh(b + 2);
        int qh = b[16 + l];
        int c = j >> 1, k = j & 1, sc, m;
        k4_scale_min(b + 4, j, &sc, &m);
        int q = b[48 + 32 * c + l];
        q = (k ? q >> 4 : q & 15) | ((qh >> j) & 1) << 4;
        float dl = d * (float)sc, ml = __fmul_rn(dmin, (float)m);
        return __fmul_rn(dl, (float)q) - ml;
    }
};

// Q6_K: ql[128], qh[64], scales[16] int8, d. In half h, element
// 128h + 32k + l has its low nibble in ql[64h + 32(k & 1) + l] (low nibble
// for k < 2, high for k >= 2), its top two bits at bit 2k of qh[32h + l],
// and scale scales[8h + 2k + l/16]; the value is d * scale * (q - 32).
struct Q6_K {
    enum { QK = 256, BYTES = 210 };
    static __device__ __forceinline__ float at(const u8* b, int j, int l) {
        float d = ldh(b + 208);
        int h = j >> 2, k = j & 3;
        int lo = b[64 * h + 32 * (k & 1) + l];
        lo = k < 2 ? lo & 15 : lo >> 4;
        int q = (lo | ((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4) - 32;
        float sc = (float)(signed char)b[192 + 8 * h + 2 * k + (l >> 4)];
        return d * sc * (float)q;
    }
};

// y[n,out] = x[n,in] · w[out,in]ᵀ with quantized w: matmul_impl's scheme
// (one warp per output row, lane l sums the elements i ≡ l mod 32 in
// increasing order, then a butterfly), each weight dequantized once per
// MM_ROWS activation rows.
template <class Q>
__device__ void matmul_q_impl(float* __restrict__ y, const float* __restrict__ x,
                              const u8* __restrict__ w, int n, int in, int out) {
    int o = (int)((blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5);
    int lane = threadIdx.x & 31;
    if (o >= out) return;
    int nb = in / Q::QK;
    const u8* wr = w + (i64)o * nb * Q::BYTES;
    for (int r0 = 0; r0 < n; r0 += MM_ROWS) {
        int nr = min(MM_ROWS, n - r0);
        const float* xr = x + (i64)r0 * in;
        float acc[MM_ROWS];
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++) acc[k] = 0.0f;
        for (int b = 0; b < nb; b++) {
            const u8* blk = wr + (i64)b * Q::BYTES;
            const float* xb = xr + (i64)b * Q::QK + lane;
#pragma unroll
            for (int j = 0; j < Q::QK / 32; j++) {
                float v = Q::at(blk, j, lane);
#pragma unroll
                for (int k = 0; k < MM_ROWS; k++)
                    if (k < nr) acc[k] += v * xb[(i64)k * in + 32 * j];
            }
        }
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++)
            if (k < nr) acc[k] = warp_sum(acc[k]); // nr is warp-uniform
        if (lane == 0)
            for (int k = 0; k < nr; k++) y[(i64)(r0 + k) * out + o] = acc[k];
    }
}

// y[n,out] = x[n,in] · w[in,out] with quantized w: row i of w holds out
// elements (whole blocks), the layout of quantized neuron bundles' down
// columns. matmul_t_impl's scheme: a block of 256 threads owns 32 output
// columns (one 32-element run of a block, as out is a whole number of
// blocks: lane l decodes element l of it), its 8 warps split the inner dimension (warp s sums rows i ≡ s mod 8) and
// the 8 partial sums are added in order through shared memory.
template <class Q>
__device__ void matmul_t_q_impl(float* __restrict__ y, const float* __restrict__ x,
                                const u8* __restrict__ w, int n, int in, int out) {
    __shared__ float part[MMT_SPLIT][MM_ROWS][MMT_COLS];
    int lane = threadIdx.x & 31, s = threadIdx.x >> 5;
    int c0 = blockIdx.x * MMT_COLS, c = c0 + lane;
    i64 rowBytes = (i64)(out / Q::QK) * Q::BYTES;
    const u8* wb = w + (i64)(c0 / Q::QK) * Q::BYTES;
    int j = (c0 % Q::QK) / 32;
    for (int r0 = 0; r0 < n; r0 += MM_ROWS) {
        int nr = min(MM_ROWS, n - r0);
        const float* xr = x + (i64)r0 * in;
        float acc[MM_ROWS];
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++) acc[k] = 0.0f;
        for (int i = s; i < in; i += MMT_SPLIT) {
            float wv = Q::at(wb + (i64)i * rowBytes, j, lane);
#pragma unroll
            for (int k = 0; k < MM_ROWS; k++)
                if (k < nr) acc[k] += wv * xr[(i64)k * in + i];
        }
#pragma unroll
        for (int k = 0; k < MM_ROWS; k++) part[s][k][lane] = acc[k];
        __syncthreads();
        if (s == 0) {
            for (int k = 0; k < nr; k++) {
                float t = 0.0f;
                for (int p = 0; p < MMT_SPLIT; p++) t += part[p][k][lane];
                y[(i64)(r0 + k) * out + c] = t;
            }
        }
        __syncthreads();
    }
}

// dst[blocks * QK] = the blocks of w dequantized (a panel of whole rows, for
// the cuBLAS path). One warp per block.
template <class Q>
__device__ void dequant_impl(float* __restrict__ dst, const u8* __restrict__ w, i64 blocks) {
    int lane = threadIdx.x & 31;
    for (i64 g = (blockIdx.x * (i64)blockDim.x + threadIdx.x) >> 5; g < blocks; g += ((i64)gridDim.x * blockDim.x) >> 5) {
#pragma unroll
        for (int j = 0; j < Q::QK / 32; j++) dst[g * Q::QK + 32 * j + lane] = Q::at(w + g * Q::BYTES, j, lane);
    }
}

extern "C" __global__ void matmul_q4_0(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q4_0>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q4_1(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q4_1>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q5_0(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q5_0>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q5_1(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q5_1>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q8_0(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q8_0>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q2_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q2_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q3_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q3_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q4_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q4_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q5_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q5_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_q6_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_q_impl<Q6_K>(y, x, w, n, in, out); }

extern "C" __global__ void matmul_t_q4_0(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q4_0>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q4_1(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q4_1>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q5_0(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q5_0>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q5_1(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q5_1>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q8_0(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q8_0>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q2_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q2_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q3_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q3_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q4_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q4_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q5_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q5_K>(y, x, w, n, in, out); }
extern "C" __global__ void matmul_t_q6_k(float* y, const float* x, const u8* w, int n, int in, int out) { matmul_t_q_impl<Q6_K>(y, x, w, n, in, out); }

extern "C" __global__ void dequant_q4_0(float* dst, const u8* w, i64 blocks) { dequant_impl<Q4_0>(dst, w, blocks); }
extern "C" __global__ void dequant_q4_1(float* dst, const u8* w, i64 blocks) { dequant_impl<Q4_1>(dst, w, blocks); }
extern "C" __global__ void dequant_q5_0(float* dst, const u8* w, i64 blocks) { dequant_impl<Q5_0>(dst, w, blocks); }
extern "C" __global__ void dequant_q5_1(float* dst, const u8* w, i64 blocks) { dequant_impl<Q5_1>(dst, w, blocks); }
extern "C" __global__ void dequant_q8_0(float* dst, const u8* w, i64 blocks) { dequant_impl<Q8_0>(dst, w, blocks); }
extern "C" __global__ void dequant_q2_k(float* dst, const u8* w, i64 blocks) { dequant_impl<Q2_K>(dst, w, blocks); }
extern "C" __global__ void dequant_q3_k(float* dst, const u8* w, i64 blocks) { dequant_impl<Q3_K>(dst, w, blocks); }
extern "C" __global__ void dequant_q4_k(float* dst, const u8* w, i64 blocks) { dequant_impl<Q4_K>(dst, w, blocks); }
extern "C" __global__ void dequant_q5_k(float* dst, const u8* w, i64 blocks) { dequant_impl<Q5_K>(dst, w, blocks); }
extern "C" __global__ void dequant_q6_k(float* dst, const u8* w, i64 blocks) { dequant_impl<Q6_K>(dst, w, blocks); }

// ---------------------------------------------------------------------------
// RMSNorm: one block per row. y = x / sqrt(mean(x²) + eps) * w.

template <class W>
__device__ void rmsnorm_impl(float* y, const float* x, const typename W::T* w, int cols, float eps) {
    __shared__ float red[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float* yr = y + (i64)blockIdx.x * cols;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    float inv = 1.0f / sqrtf(ss / (float)cols + eps);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = xr[i] * inv * W::get(w, i);
}

extern "C" __global__ void rmsnorm_f32(float* y, const float* x, const float* w, int cols, float eps) {
    rmsnorm_impl<WF32>(y, x, w, cols, eps);
}
extern "C" __global__ void rmsnorm_f16(float* y, const float* x, const u16* w, int cols, float eps) {
    rmsnorm_impl<WF16>(y, x, w, cols, eps);
}
extern "C" __global__ void rmsnorm_bf16(float* y, const float* x, const u16* w, int cols, float eps) {
    rmsnorm_impl<WBF16>(y, x, w, cols, eps);
}

// ---------------------------------------------------------------------------
// RoPE in place on x[n, cols] (cols = heads*headDim), row r at position
// pos0+r. One thread per rotated pair. Pair i of a head uses frequency
// theta^(-2i/headDim); half = 0 pairs (2i, 2i+1), half = 1 pairs (i, i+d/2).
// Angles are computed in double so long positions keep their precision.

// rope_at turns pair i of head h of row r by ang.
__device__ __forceinline__ void rope_at(float* x, int r, int cols, int h, int i, int headDim, int half, double ang) {
    int hp = headDim / 2;
    float c = (float)cos(ang), s = (float)sin(ang);
    float* row = x + (i64)r * cols + (i64)h * headDim;
    int a = half ? i : 2 * i, b = half ? i + hp : 2 * i + 1;
    float v0 = row[a], v1 = row[b];
    row[a] = v0 * c - v1 * s;
    row[b] = v0 * s + v1 * c;
}

extern "C" __global__ void rope(float* x, int n, int cols, int pos0, int headDim, float theta, int half) {
    i64 p = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    int pairsPerRow = cols / 2, hp = headDim / 2;
    if (p >= (i64)n * pairsPerRow) return;
    int r = (int)(p / pairsPerRow), q = (int)(p % pairsPerRow);
    int i = q % hp;
    double freq = pow((double)theta, -2.0 * (double)i / (double)headDim);
    rope_at(x, r, cols, q / hp, i, headDim, half, (double)(pos0 + r) * freq);
}

// RoPE with explicit inverse frequencies (scaled RoPE, Llama 3.1): pair i of
// every head turns by (pos0+r)*freqs[i].
extern "C" __global__ void rope_freqs(float* x, int n, int cols, int pos0, int headDim, const float* freqs, int half) {
    i64 p = blockIdx.x * (i64)blockDim.x + threadIdx.x;
    int pairsPerRow = cols / 2, hp = headDim / 2;
    if (p >= (i64)n * pairsPerRow) return;
    int r = (int)(p / pairsPerRow), q = (int)(p % pairsPerRow);
    int i = q % hp;
    rope_at(x, r, cols, q / hp, i, headDim, half, (double)(pos0 + r) * (double)freqs[i]);
}

// ---------------------------------------------------------------------------
// Causal GQA attention over the cache. One block per (query head, row).
// Scores are processed in tiles of ATT_TILE positions with an online softmax
// (running max and sum), so any context length works in fixed shared memory.
// Thread t owns output dims t, t+blockDim, ... (headDim <= ATT_MAXD).

#define ATT_TILE 1024
#define ATT_THREADS 128
#define ATT_MAXD 512

extern "C" __global__ void attention(float* out, const float* q, const float* k, const float* v,
                                     int pos0, int nHeads, int nKVHeads, int headDim,
                                     int qStride, int kvStride, float scale) {
    __shared__ float sc[ATT_TILE];
    __shared__ float red[32];
    int h = blockIdx.x, r = blockIdx.y;
    int kvh = h / (nHeads / nKVHeads);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float* qr = q + (i64)r * qStride + (i64)h * headDim;
    const float* kb = k + (i64)kvh * headDim;
    const float* vb = v + (i64)kvh * headDim;
    int len = pos0 + r + 1;
    float acc[ATT_MAXD / ATT_THREADS];
#pragma unroll
    for (int j = 0; j < ATT_MAXD / ATT_THREADS; j++) acc[j] = 0.0f;
    float m = -F32_INF, l = 0.0f;
    for (int t0 = 0; t0 < len; t0 += ATT_TILE) {
        int tn = min(ATT_TILE, len - t0);
        for (int t = warp; t < tn; t += nw) {
            const float* kr = kb + (i64)(t0 + t) * kvStride;
            float d = 0.0f;
            for (int i = lane; i < headDim; i += 32) d += qr[i] * kr[i];
            d = warp_sum(d);
            if (lane == 0) sc[t] = d * scale;
        }
        __syncthreads();
        float tm = -F32_INF;
        for (int t = threadIdx.x; t < tn; t += blockDim.x) tm = fmaxf(tm, sc[t]);
        tm = block_max(tm, red);
        float mn = fmaxf(m, tm);
        float corr = (m == -F32_INF) ? 0.0f : expf(m - mn);
        float ts = 0.0f;
        for (int t = threadIdx.x; t < tn; t += blockDim.x) {
            float e = expf(sc[t] - mn);
            sc[t] = e;
            ts += e;
        }
        ts = block_sum(ts, red); // its __syncthreads also publishes sc
        l = l * corr + ts;
#pragma unroll
        for (int j = 0; j < ATT_MAXD / ATT_THREADS; j++) {
            int d = threadIdx.x + j * ATT_THREADS;
            if (d < headDim) {
                float a = acc[j] * corr;
                for (int t = 0; t < tn; t++) a += sc[t] * vb[(i64)(t0 + t) * kvStride + d];
                acc[j] = a;
            }
        }
        m = mn;
        __syncthreads();
    }
    float* orow = out + (i64)r * qStride + (i64)h * headDim;
#pragma unroll
    for (int j = 0; j < ATT_MAXD / ATT_THREADS; j++) {
        int d = threadIdx.x + j * ATT_THREADS;
        if (d < headDim) orow[d] = acc[j] / l;
    }
}

// ---------------------------------------------------------------------------
// Elementwise.

extern "C" __global__ void silu_mul(float* out, const float* gate, const float* up, i64 count) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < count; i += (i64)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" __global__ void add_f32(float* y, const float* x, i64 count) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < count; i += (i64)gridDim.x * blockDim.x)
        y[i] += x[i];
}

// ---------------------------------------------------------------------------
// Gathers. Element types are moved as raw 16- or 32-bit words. An index
// outside [0, srcRows) (resp. [0, cols)) raises ERR_INDEX with the index and
// leaves that row unwritten.

template <class T>
__device__ void gather_rows_impl(T* dst, const T* src, const int* idx, int k, int words, int srcRows, int* err) {
    int i = blockIdx.y;
    if (i >= k) return;
    int row = idx[i];
    if (row < 0 || row >= srcRows) {
        if (threadIdx.x == 0 && blockIdx.x == 0) raise_error(err, ERR_INDEX, row);
        return;
    }
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < words; j += gridDim.x * blockDim.x)
        dst[(i64)i * words + j] = src[(i64)row * words + j];
}

extern "C" __global__ void gather_rows_u16(u16* dst, const u16* src, const int* idx, int k, int words, int srcRows, int* err) {
    gather_rows_impl<u16>(dst, src, idx, k, words, srcRows, err);
}
extern "C" __global__ void gather_rows_u32(u32* dst, const u32* src, const int* idx, int k, int words, int srcRows, int* err) {
    gather_rows_impl<u32>(dst, src, idx, k, words, srcRows, err);
}

// dst[i][r] = src[r][idx[i]]; src is [rows, cols], dst [k, rows].
template <class T>
__device__ void gather_cols_t_impl(T* dst, const T* src, const int* idx, int k, int rows, int cols, int* err) {
    int i = blockIdx.y;
    if (i >= k) return;
    int c = idx[i];
    if (c < 0 || c >= cols) {
        if (threadIdx.x == 0 && blockIdx.x == 0) raise_error(err, ERR_INDEX, c);
        return;
    }
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
        dst[(i64)i * rows + r] = src[(i64)r * cols + c];
}

extern "C" __global__ void gather_cols_t_u16(u16* dst, const u16* src, const int* idx, int k, int rows, int cols, int* err) {
    gather_cols_t_impl<u16>(dst, src, idx, k, rows, cols, err);
}
extern "C" __global__ void gather_cols_t_u32(u32* dst, const u32* src, const int* idx, int k, int rows, int cols, int* err) {
    gather_cols_t_impl<u32>(dst, src, idx, k, rows, cols, err);
}

// ---------------------------------------------------------------------------
// Conversions between f32 and the half types.

extern "C" __global__ void f32_to_bf16_k(u16* dst, const float* src, i64 count) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < count; i += (i64)gridDim.x * blockDim.x)
        dst[i] = f32_to_bf16(src[i]);
}
extern "C" __global__ void f32_to_f16_k(u16* dst, const float* src, i64 count) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < count; i += (i64)gridDim.x * blockDim.x)
        dst[i] = f32_to_f16(src[i]);
}
extern "C" __global__ void bf16_to_f32_k(float* dst, const u16* src, i64 count) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < count; i += (i64)gridDim.x * blockDim.x)
        dst[i] = bf16_to_f32(src[i]);
}
extern "C" __global__ void f16_to_f32_k(float* dst, const u16* src, i64 count) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < count; i += (i64)gridDim.x * blockDim.x)
        dst[i] = f16_to_f32(src[i]);
}

// ---------------------------------------------------------------------------
// Per-row reductions over logits: one block per row.

// out[r] = the index of the largest x[r][i]; the first one on ties; NaNs are
// never chosen (an all-NaN row gives 0).
extern "C" __global__ void argmax_rows(int* out, const float* x, int cols) {
    __shared__ float bv[32];
    __shared__ int bi[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float best = -F32_INF;
    int bidx = 0x7fffffff;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float v = xr[i];
        if (v > best || (v == best && i < bidx)) { best = v; bidx = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bidx, o);
        if (ov > best || (ov == best && oi < bidx)) { best = ov; bidx = oi; }
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) { bv[warp] = best; bi[warp] = bidx; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nw; w++)
            if (bv[w] > best || (bv[w] == best && bi[w] < bidx)) { best = bv[w]; bidx = bi[w]; }
        out[blockIdx.x] = bidx == 0x7fffffff ? 0 : bidx;
    }
}

// y[r] = softmax(x[r] / temperature).
extern "C" __global__ void softmax_rows(float* y, const float* x, int cols, float invTemp) {
    __shared__ float red[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    float* yr = y + (i64)blockIdx.x * cols;
    float m = -F32_INF;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, xr[i] * invTemp);
    m = block_max(m, red);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) s += expf(xr[i] * invTemp - m);
    s = block_sum(s, red);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = expf(xr[i] * invTemp - m) / s;
}

// out[r] = log softmax(x[r] / temperature)[tok[r]]: the log-likelihood the
// Sirius check compares against its acceptance threshold.
extern "C" __global__ void loglik_rows(float* out, const float* x, const int* tok, int cols, float invTemp, int* err) {
    __shared__ float red[32];
    const float* xr = x + (i64)blockIdx.x * cols;
    int t = tok[blockIdx.x];
    if (t < 0 || t >= cols) {
        if (threadIdx.x == 0) {
            raise_error(err, ERR_INDEX, t);
            out[blockIdx.x] = -F32_INF;
        }
        return;
    }
    float m = -F32_INF;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, xr[i] * invTemp);
    m = block_max(m, red);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) s += expf(xr[i] * invTemp - m);
    s = block_sum(s, red);
    if (threadIdx.x == 0) out[blockIdx.x] = xr[t] * invTemp - m - logf(s);
}
