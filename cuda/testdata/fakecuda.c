// fakecuda.c: a stand-in for libcuda, libnvrtc and libcublas holding only
// the entry points the cuda package's tests reach. Built with gcc by
// fake_test.go into a temporary directory and loaded through the same purego
// binding code as the real libraries (OFFLOAD_LIBCUDA & co).
//
// "Device memory" is host memory from malloc, so copies really move bytes;
// allocations above FAKE_UNBACKED bytes get an unbacked address instead, so
// that a test can pass sizes above 4 GiB without having the memory. Kernel
// launches and cublasGemmEx do not compute: they record their arguments,
// which the test reads back through the fake_* functions.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef uint64_t CUdeviceptr;

#define FAKE_UNBACKED (64ull << 20)
// Unbacked addresses start here, far from where Linux puts heap and mmap.
#define UNBACKED_BASE 0x100000000000ull

static int cc_major = 8, cc_minor = 9;
static uint64_t mem_free = 16ull << 30, mem_total = 24ull << 30;
static int init_calls, ctx_set_calls;

void fake_set_device(int major, int minor, uint64_t free_bytes, uint64_t total) {
    cc_major = major;
    cc_minor = minor;
    mem_free = free_bytes;
    mem_total = total;
}

int fake_ctx_set_calls(void) { return ctx_set_calls; }

// ---- driver ------------------------------------------------------------

CUresult cuInit(unsigned flags) {
    init_calls++;
    return flags == 0 ? 0 : 1;
}
CUresult cuDriverGetVersion(int *v) { *v = 12040; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *dev, int ordinal) {
    if (ordinal != 0) return 101; // CUDA_ERROR_INVALID_DEVICE
    *dev = 0;
    return 0;
}
CUresult cuDeviceGetName(char *name, int len, int dev) {
    strncpy(name, "Fake GPU", (size_t)len);
    return 0;
}
CUresult cuDeviceGetAttribute(int *v, int attr, int dev) {
    if (attr == 75) { *v = cc_major; return 0; }
    if (attr == 76) { *v = cc_minor; return 0; }
    return 1;
}
static int ctx_token;
CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev) { *ctx = &ctx_token; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { return 0; }
CUresult cuCtxSetCurrent(void *ctx) {
    ctx_set_calls++;
    return ctx == &ctx_token ? 0 : 201; // CUDA_ERROR_INVALID_CONTEXT
}
CUresult cuMemGetInfo_v2(uint64_t *free_bytes, uint64_t *total) {
    *free_bytes = mem_free;
    *total = mem_total;
    return 0;
}
CUresult cuGetErrorName(CUresult r, const char **s) {
    switch (r) {
    case 1: *s = "CUDA_ERROR_INVALID_VALUE"; return 0;
    case 2: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return 0;
    case 201: *s = "CUDA_ERROR_INVALID_CONTEXT"; return 0;
    }
    return 1;
}

// Allocations. The last requested size and the last freed pointer are kept
// for the test.
static uint64_t last_alloc_size;
static CUdeviceptr last_freed, next_unbacked = UNBACKED_BASE;
static int live_allocs;

CUresult cuMemAlloc_v2(CUdeviceptr *p, uint64_t size) {
    last_alloc_size = size;
    if (size == 0) return 1;
    if (size > mem_free) return 2;
    if (size > FAKE_UNBACKED) {
        *p = next_unbacked;
        next_unbacked += (size + 0xffff) & ~0xffffull;
    } else {
        void *m = calloc(1, size);
        if (!m) return 2;
        *p = (CUdeviceptr)(uintptr_t)m;
    }
    live_allocs++;
    return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    last_freed = p;
    live_allocs--;
    if (!(p >= UNBACKED_BASE && p < next_unbacked)) free((void *)(uintptr_t)p);
    return 0;
}
uint64_t fake_last_alloc_size(void) { return last_alloc_size; }
CUdeviceptr fake_last_freed(void) { return last_freed; }
int fake_live_allocs(void) { return live_allocs; }

static int host_allocs;
CUresult cuMemHostAlloc(void **p, uint64_t size, unsigned flags) {
    *p = calloc(1, size);
    if (!*p) return 2;
    host_allocs++;
    return 0;
}
CUresult cuMemFreeHost(void *p) {
    free(p);
    host_allocs--;
    return 0;
}
int fake_host_allocs(void) { return host_allocs; }
// Copies run at once (the fake has no queue); each records its arguments.
static struct {
    CUdeviceptr dst, src;
    uint64_t n;
    void *stream;
} last_copy;

static void note_copy(CUdeviceptr dst, CUdeviceptr src, uint64_t n, void *stream) {
    last_copy.dst = dst;
    last_copy.src = src;
    last_copy.n = n;
    last_copy.stream = stream;
}
void fake_last_copy(CUdeviceptr *dst, CUdeviceptr *src, uint64_t *n, void **stream) {
    *dst = last_copy.dst;
    *src = last_copy.src;
    *n = last_copy.n;
    *stream = last_copy.stream;
}

static int backed(CUdeviceptr p) { return !(p >= UNBACKED_BASE && p < next_unbacked); }

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, uint64_t n, void *stream) {
    note_copy(dst, (CUdeviceptr)(uintptr_t)src, n, stream);
    if (backed(dst)) memcpy((void *)(uintptr_t)dst, src, n);
    return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, uint64_t n, void *stream) {
    note_copy((CUdeviceptr)(uintptr_t)dst, src, n, stream);
    if (backed(src)) memcpy(dst, (void *)(uintptr_t)src, n);
    return 0;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, uint64_t n, void *stream) {
    note_copy(dst, src, n, stream);
    if (backed(dst) && backed(src)) memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
    return 0;
}

// Streams and events. Each event records the sequence number of its last
// cuEventRecord; elapsed time is the difference in "milliseconds".
static int live_streams;
CUresult cuStreamCreate(void **s, unsigned flags) {
    *s = malloc(16);
    live_streams++;
    return flags == 1 ? 0 : 1;
}
CUresult cuStreamDestroy_v2(void *s) { free(s); live_streams--; return 0; }
CUresult cuStreamSynchronize(void *s) { return 0; }
static void *last_wait_stream, *last_wait_event;
CUresult cuStreamWaitEvent(void *s, void *e, unsigned flags) {
    last_wait_stream = s;
    last_wait_event = e;
    return 0;
}
int fake_live_streams(void) { return live_streams; }

typedef struct { int seq; } fake_event;
static int event_seq, live_events;
CUresult cuEventCreate(void **e, unsigned flags) {
    fake_event *ev = calloc(1, sizeof *ev);
    *e = ev;
    live_events++;
    return 0;
}
CUresult cuEventRecord(void *e, void *s) { ((fake_event *)e)->seq = event_seq++; return 0; }
CUresult cuEventSynchronize(void *e) { return 0; }
CUresult cuEventDestroy_v2(void *e) { free(e); live_events--; return 0; }
CUresult cuEventElapsedTime(float *ms, void *start, void *end) {
    *ms = (float)(((fake_event *)end)->seq - ((fake_event *)start)->seq) * 1.5f;
    return 0;
}
int fake_live_events(void) { return live_events; }

// Modules: the "image" must be what the fake NVRTC produced.
static char module_image[64];
static int modules_loaded;
CUresult cuModuleLoadData(void **m, const void *image) {
    if (strncmp((const char *)image, "FAKECUBIN ", 10) != 0 && strncmp((const char *)image, "FAKEPTX ", 8) != 0)
        return 200; // CUDA_ERROR_INVALID_IMAGE
    strncpy(module_image, (const char *)image, sizeof module_image - 1);
    *m = module_image;
    modules_loaded++;
    return 0;
}
CUresult cuModuleUnload(void *m) { modules_loaded--; return 0; }
int fake_module_image(char *out, int cap) {
    strncpy(out, module_image, (size_t)cap);
    return modules_loaded;
}

typedef struct { char name[64]; } fake_fn;
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
    fake_fn *fn = calloc(1, sizeof *fn);
    strncpy(fn->name, name, sizeof fn->name - 1);
    *f = fn;
    return 0;
}

// Launches: the test says how many parameters of which sizes to expect
// (fake_expect_params) before it enqueues a kernel; the launch copies that
// many bytes from each kernelParams[i].
#define MAXP 16
static int expect_n, expect_size[MAXP];
static struct {
    char name[64];
    unsigned dims[6], shmem;
    void *stream;
    unsigned char params[MAXP][8];
    int count;
} last_launch;
static int launches;

void fake_expect_params(int n, const int *sizes) {
    expect_n = n;
    for (int i = 0; i < n && i < MAXP; i++) expect_size[i] = sizes[i];
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shmem, void *stream, void **params, void **extra) {
    if (extra != NULL) return 1;
    launches++;
    strncpy(last_launch.name, ((fake_fn *)f)->name, sizeof last_launch.name);
    unsigned d[6] = {gx, gy, gz, bx, by, bz};
    memcpy(last_launch.dims, d, sizeof d);
    last_launch.shmem = shmem;
    last_launch.stream = stream;
    last_launch.count = expect_n;
    memset(last_launch.params, 0, sizeof last_launch.params);
    for (int i = 0; i < expect_n && i < MAXP; i++) memcpy(last_launch.params[i], params[i], (size_t)expect_size[i]);
    return 0;
}
int fake_launches(void) { return launches; }
int fake_last_launch(char *name, int cap, unsigned *dims, unsigned *shmem, void **stream, unsigned char *params) {
    strncpy(name, last_launch.name, (size_t)cap);
    memcpy(dims, last_launch.dims, sizeof last_launch.dims);
    *shmem = last_launch.shmem;
    *stream = last_launch.stream;
    memcpy(params, last_launch.params, sizeof last_launch.params);
    return last_launch.count;
}

// ---- NVRTC ---------------------------------------------------------------

typedef struct {
    size_t srclen;
    char arch[32];
} fake_prog;
static int compiles;
int nvrtcVersion(int *major, int *minor) { *major = 11; *minor = 8; return 0; }
int nvrtcGetNumSupportedArchs(int *n) { *n = 4; return 0; }
int nvrtcGetSupportedArchs(int *a) { a[0] = 80; a[1] = 86; a[2] = 89; a[3] = 90; return 0; }
const char *nvrtcGetErrorString(int r) { return r == 0 ? "NVRTC_SUCCESS" : "NVRTC_ERROR_COMPILATION"; }
int nvrtcCreateProgram(void **prog, const char *src, const char *name, int nh, const char **h, const char **hn) {
    fake_prog *p = calloc(1, sizeof *p);
    p->srclen = strlen(src);
    *prog = p;
    return 0;
}
int nvrtcCompileProgram(void *prog, int nopt, const char **opts) {
    fake_prog *p = prog;
    compiles++;
    for (int i = 0; i < nopt; i++)
        if (strncmp(opts[i], "--gpu-architecture=", 19) == 0) strncpy(p->arch, opts[i] + 19, sizeof p->arch - 1);
    return p->arch[0] && p->srclen > 0 ? 0 : 6;
}
int fake_compiles(void) { return compiles; }
int nvrtcGetProgramLogSize(void *prog, size_t *n) { *n = 1; return 0; }
int nvrtcGetProgramLog(void *prog, char *log) { log[0] = 0; return 0; }
static void image_of(fake_prog *p, char *out) {
    strcpy(out, strncmp(p->arch, "sm_", 3) == 0 ? "FAKECUBIN " : "FAKEPTX ");
    strcat(out, p->arch);
}
int nvrtcGetCUBINSize(void *prog, size_t *n) {
    char img[64];
    image_of(prog, img);
    *n = strlen(img) + 1;
    return 0;
}
int nvrtcGetCUBIN(void *prog, char *out) { image_of(prog, out); return 0; }
int nvrtcGetPTXSize(void *prog, size_t *n) { return nvrtcGetCUBINSize(prog, n); }
int nvrtcGetPTX(void *prog, char *out) { image_of(prog, out); return 0; }
int nvrtcDestroyProgram(void **prog) { free(*prog); *prog = NULL; return 0; }

// ---- cuBLAS --------------------------------------------------------------

static int handles;
static void *handle_stream;
int cublasCreate_v2(void **h) { *h = &handles; handles++; return 0; }
int cublasDestroy_v2(void *h) { handles--; return 0; }
int cublasSetStream_v2(void *h, void *s) { handle_stream = s; return 0; }
int fake_cublas_handles(void) { return handles; }

// All 19 arguments of the last cublasGemmEx, alpha and beta dereferenced.
static struct {
    int64_t ints[13]; // transa transb m n k Atype lda Btype ldb Ctype ldc compute algo
    uint64_t ptrs[3]; // A B C
    float alpha, beta;
    void *handle, *stream;
} last_gemm;
static int gemms;
int cublasGemmEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at, int lda,
                 const void *B, int bt, int ldb, const void *beta, void *C, int ct, int ldc, int compute, int algo) {
    int64_t v[13] = {ta, tb, m, n, k, at, lda, bt, ldb, ct, ldc, compute, algo};
    memcpy(last_gemm.ints, v, sizeof v);
    last_gemm.ptrs[0] = (uint64_t)(uintptr_t)A;
    last_gemm.ptrs[1] = (uint64_t)(uintptr_t)B;
    last_gemm.ptrs[2] = (uint64_t)(uintptr_t)C;
    last_gemm.alpha = *(const float *)alpha;
    last_gemm.beta = *(const float *)beta;
    last_gemm.handle = h;
    last_gemm.stream = handle_stream;
    gemms++;
    return 0;
}
int fake_last_gemm(int64_t *ints, uint64_t *ptrs, float *ab, void **stream) {
    memcpy(ints, last_gemm.ints, sizeof last_gemm.ints);
    memcpy(ptrs, last_gemm.ptrs, sizeof last_gemm.ptrs);
    ab[0] = last_gemm.alpha;
    ab[1] = last_gemm.beta;
    *stream = last_gemm.stream;
    return gemms;
}
