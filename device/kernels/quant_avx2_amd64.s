//go:build amd64 && !purego

#include "textflag.h"

// AVX2 (+FMA, F16C) versions of the quantized kernels, for CPUs without
// AVX-512: the same methods as quant_amd64.s with 8-lane vectors and 16
// registers, one or two weight rows at a time.

DATA qa0f<>+0(SB)/4, $0x0000000f
GLOBL qa0f<>(SB), RODATA|NOPTR, $4
DATA qaf0<>+0(SB)/4, $0x000000f0
GLOBL qaf0<>(SB), RODATA|NOPTR, $4
DATA qaf00<>+0(SB)/4, $0x00000f00
GLOBL qaf00<>(SB), RODATA|NOPTR, $4
DATA qaf000<>+0(SB)/4, $0x0000f000
GLOBL qaf000<>(SB), RODATA|NOPTR, $4
DATA qa20<>+0(SB)/4, $0x00000020
GLOBL qa20<>(SB), RODATA|NOPTR, $4
DATA qab0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL qab0f<>(SB), RODATA|NOPTR, $4
DATA qab30<>+0(SB)/4, $0x30303030
GLOBL qab30<>(SB), RODATA|NOPTR, $4

// QPFA prefetches the weight line OFF bytes past P into L2 from 16 KiB ahead:
// the hardware prefetcher alone let a one-thread matvec reach only half the
// read bandwidth (Q8_0, Zen 4); this brought it from 15 to 20 GB/s.
#define QPFA(P, OFF) PREFETCHT1 16384+OFF(P)

// Q4K_SCALES_A(P): the eight 6-bit scales of the Q4_K block at P as bytes in
// AX, the eight mins in CX. Clobbers R12, R13.
#define Q4K_SCALES_A(P) \
	MOVL  4(P), AX; \
	MOVL  8(P), CX; \
	MOVL  12(P), R12; \
	MOVL  AX, R13; \
	SHRL  $2, R13; \
	ANDL  $0x30303030, R13; \
	ANDL  $0x3f3f3f3f, AX; \
	SHLQ  $32, R13; \
	ORQ   R13, AX; \
	MOVL  R12, R13; \
	ANDL  $0x0f0f0f0f, R13; \
	SHLQ  $32, R13; \
	ORQ   R13, AX; \
	MOVL  CX, R13; \
	SHRL  $2, R13; \
	ANDL  $0x30303030, R13; \
	ANDL  $0x3f3f3f3f, CX; \
	SHLQ  $32, R13; \
	ORQ   R13, CX; \
	SHRL  $4, R12; \
	ANDL  $0x0f0f0f0f, R12; \
	SHLQ  $32, R12; \
	ORQ   R12, CX

// QA_HSUM stores the horizontal sum of ymm Y (xmm X) at OUT. Clobbers Y, X13.
#define QA_HSUM(Y, X, OUT) \
	VEXTRACTF128 $1, Y, X13; \
	VADDPS    X13, X, X; \
	VPERMILPS $0x4e, X, X13; \
	VADDPS    X13, X, X; \
	VPERMILPS $0xb1, X, X13; \
	VADDSS    X13, X, X; \
	VMOVSS    X, OUT

// Q4K_A_PREP: stores d*sc[0..7] at S(SP) for the block at P and subtracts
// Σ dmin*m[j] * Σx[j] (Σx per 32 at (BX)) from TOT. Uses Y4-Y7.
#define Q4K_A_PREP(P, S, TOT) \
	Q4K_SCALES_A(P); \
	VMOVQ     AX, X4; \
	VPMOVZXBD X4, Y4; \
	VCVTDQ2PS Y4, Y4; \
	VMOVQ     CX, X5; \
	VPMOVZXBD X5, Y5; \
	VCVTDQ2PS Y5, Y5; \
	VPBROADCASTW (P), X6; \
	VCVTPH2PS X6, Y6; \
	VPBROADCASTW 2(P), X7; \
	VCVTPH2PS X7, Y7; \
	VMULPS    Y6, Y4, Y4; \
	VMULPS    Y7, Y5, Y5; \
	VMOVUPS   Y4, S(SP); \
	VFNMADD231PS (BX), Y5, TOT

// Q4K_A_CHUNK: chunk C (qs bytes 16+32C..) of the block at P, nibbles kept
// in place: masks Y0-Y3 = 0xf, 0xf0, 0xf00, 0xf000 per dword, activation
// prepared in the matching order at (DX) (see q4kPrepAVX2). Uses Y8-Y13.
#define Q4K_A_CHUNK(P, C, S, TOT) \
	VMOVDQU   16+32*(C)(P), Y8; \
	VPSRLD    $16, Y8, Y9; \
	VPAND     Y0, Y8, Y10; \
	VCVTDQ2PS Y10, Y10; \
	VMULPS    256*(C)(DX), Y10, Y10; \
	VPAND     Y2, Y8, Y11; \
	VCVTDQ2PS Y11, Y11; \
	VFMADD231PS 256*(C)+32(DX), Y11, Y10; \
	VPAND     Y0, Y9, Y11; \
	VCVTDQ2PS Y11, Y11; \
	VFMADD231PS 256*(C)+64(DX), Y11, Y10; \
	VPAND     Y2, Y9, Y11; \
	VCVTDQ2PS Y11, Y11; \
	VFMADD231PS 256*(C)+96(DX), Y11, Y10; \
	VPAND     Y1, Y8, Y12; \
	VCVTDQ2PS Y12, Y12; \
	VMULPS    256*(C)+128(DX), Y12, Y12; \
	VPAND     Y3, Y8, Y11; \
	VCVTDQ2PS Y11, Y11; \
	VFMADD231PS 256*(C)+160(DX), Y11, Y12; \
	VPAND     Y1, Y9, Y11; \
	VCVTDQ2PS Y11, Y11; \
	VFMADD231PS 256*(C)+192(DX), Y11, Y12; \
	VPAND     Y3, Y9, Y11; \
	VCVTDQ2PS Y11, Y11; \
	VFMADD231PS 256*(C)+224(DX), Y11, Y12; \
	VBROADCASTSS S+8*(C)(SP), Y13; \
	VFMADD231PS Y13, Y10, TOT; \
	VBROADCASTSS S+8*(C)+4(SP), Y13; \
	VFMADD231PS Y13, Y12, TOT

#define Q4K_A_ROW(P, S, TOT) \
	QPFA(P, 0); \
	QPFA(P, 64); \
	QPFA(P, 128); \
	Q4K_A_PREP(P, S, TOT); \
	Q4K_A_CHUNK(P, 0, S, TOT); \
	Q4K_A_CHUNK(P, 1, S, TOT); \
	Q4K_A_CHUNK(P, 2, S, TOT); \
	Q4K_A_CHUNK(P, 3, S, TOT)

#define Q4K_A_MASKS \
	VPBROADCASTD qa0f<>(SB), Y0; \
	VPBROADCASTD qaf0<>(SB), Y1; \
	VPBROADCASTD qaf00<>(SB), Y2; \
	VPBROADCASTD qaf000<>(SB), Y3

// Q8_A_BLOCK adds d * Σ q·x for the Q8_0 block at P into ACC, x in Y4-Y7.
// Uses Y8-Y12.
#define Q8_A_BLOCK(P, ACC) \
	QPFA(P, 0); \
	VPMOVSXBD 2(P), Y8; \
	VPMOVSXBD 10(P), Y9; \
	VPMOVSXBD 18(P), Y10; \
	VPMOVSXBD 26(P), Y11; \
	VCVTDQ2PS Y8, Y8; \
	VCVTDQ2PS Y9, Y9; \
	VCVTDQ2PS Y10, Y10; \
	VCVTDQ2PS Y11, Y11; \
	VMULPS    Y4, Y8, Y8; \
	VMULPS    Y5, Y9, Y9; \
	VFMADD231PS Y6, Y10, Y8; \
	VFMADD231PS Y7, Y11, Y9; \
	VADDPS    Y9, Y8, Y8; \
	VPBROADCASTW (P), X12; \
	VCVTPH2PS X12, Y12; \
	VFMADD231PS Y12, Y8, ACC

// Q6K_A_UNPACK writes the 256 six-bit quants of the Q6_K block at SI, in
// element order, as bytes at 64(SP). Byte constants: Y0 = 0x0f, Y1 = 0x30.
// Word shifts leak bits across bytes only into positions the masks clear.
#define Q6K_A_HALF(H) \
	VMOVDQU   64*(H)(SI), Y8; \
	VMOVDQU   64*(H)+32(SI), Y9; \
	VMOVDQU   128+32*(H)(SI), Y10; \
	VPAND     Y0, Y8, Y11; \
	VPSLLW    $4, Y10, Y12; \
	VPAND     Y1, Y12, Y12; \
	VPOR      Y12, Y11, Y11; \
	VMOVDQU   Y11, 64+128*(H)(SP); \
	VPAND     Y0, Y9, Y11; \
	VPSLLW    $2, Y10, Y12; \
	VPAND     Y1, Y12, Y12; \
	VPOR      Y12, Y11, Y11; \
	VMOVDQU   Y11, 96+128*(H)(SP); \
	VPSRLW    $4, Y8, Y11; \
	VPAND     Y0, Y11, Y11; \
	VPAND     Y1, Y10, Y12; \
	VPOR      Y12, Y11, Y11; \
	VMOVDQU   Y11, 128+128*(H)(SP); \
	VPSRLW    $4, Y9, Y11; \
	VPAND     Y0, Y11, Y11; \
	VPSRLW    $2, Y10, Y12; \
	VPAND     Y1, Y12, Y12; \
	VPOR      Y12, Y11, Y11; \
	VMOVDQU   Y11, 160+128*(H)(SP)

// Q6K_A_SCALES stores d*sc[0..15] at (SP). Uses Y4-Y6.
#define Q6K_A_SCALES \
	VPMOVSXBD 192(SI), Y4; \
	VPMOVSXBD 200(SI), Y5; \
	VCVTDQ2PS Y4, Y4; \
	VCVTDQ2PS Y5, Y5; \
	VPBROADCASTW 208(SI), X6; \
	VCVTPH2PS X6, Y6; \
	VMULPS    Y4, Y6, Y4; \
	VMULPS    Y5, Y6, Y5; \
	VMOVUPS   Y4, (SP); \
	VMOVUPS   Y5, 32(SP)

// Q6K_A_GROUP adds d*sc[G] * Σ q·x over group G (16 elements) into ACC.
#define Q6K_A_GROUP(G, ACC) \
	VPMOVZXBD 64+16*(G)(SP), Y8; \
	VPMOVZXBD 72+16*(G)(SP), Y9; \
	VCVTDQ2PS Y8, Y8; \
	VCVTDQ2PS Y9, Y9; \
	VMULPS    64*(G)(DX), Y8, Y8; \
	VFMADD231PS 64*(G)+32(DX), Y9, Y8; \
	VBROADCASTSS 4*(G)(SP), Y10; \
	VFMADD231PS Y10, Y8, ACC

// Q4K_A_D8: 8 quants from the bytes at Q(SI) (low nibbles: OP = VPAND, A =
// Y0; high: OP = VPSRLD, A = $4), times Y14 minus Y15, stored at OUT(DI).
#define Q4K_A_D8(Q, OUT, OP, A) \
	VPMOVZXBD Q(SI), Y8; \
	OP        A, Y8, Y8; \
	VCVTDQ2PS Y8, Y8; \
	VMULPS    Y14, Y8, Y8; \
	VSUBPS    Y15, Y8, Y8; \
	VMOVUPS   Y8, OUT(DI)

#define Q4K_A_DGROUP(C, G, OP, A, OUT) \
	VBROADCASTSS 4*(G)(SP), Y14; \
	VBROADCASTSS 32+4*(G)(SP), Y15; \
	Q4K_A_D8(16+32*(C), OUT, OP, A); \
	Q4K_A_D8(24+32*(C), OUT+32, OP, A); \
	Q4K_A_D8(32+32*(C), OUT+64, OP, A); \
	Q4K_A_D8(40+32*(C), OUT+96, OP, A)

// Q6K_A_D16: group G's 16 quants (bytes at 64+16G(SP)) minus 32, times
// d*sc[G], stored at 64G(DI). Y2 = 32 per dword.
#define Q6K_A_D16(G) \
	VBROADCASTSS 4*(G)(SP), Y10; \
	VPMOVZXBD 64+16*(G)(SP), Y8; \
	VPMOVZXBD 72+16*(G)(SP), Y9; \
	VPSUBD    Y2, Y8, Y8; \
	VPSUBD    Y2, Y9, Y9; \
	VCVTDQ2PS Y8, Y8; \
	VCVTDQ2PS Y9, Y9; \
	VMULPS    Y10, Y8, Y8; \
	VMULPS    Y10, Y9, Y9; \
	VMOVUPS   Y8, 64*(G)(DI); \
	VMOVUPS   Y9, 64*(G)+32(DI)

// QA_HSUM4 stores the horizontal sums of ymm A, B, C, D as four floats at
// OFF(DI). Clobbers them.
#define QA_HSUM4(A, XA, B, XB, C, D, OFF) \
	VHADDPS   B, A, A; \
	VHADDPS   D, C, C; \
	VHADDPS   C, A, A; \
	VEXTRACTF128 $1, A, XB; \
	VADDPS    XB, XA, XA; \
	VMOVUPS   XA, OFF(DI)

// func q4kMatVec2AVX2(y *float32, w *byte, xp, xs *float32, rb, nb int)
// Two Q4_K rows rb bytes apart, sharing each load of the activation.
TEXT ·q4kMatVec2AVX2(SB), NOSPLIT, $64-48
	MOVQ  w+8(FP), SI
	MOVQ  xp+16(FP), DX
	MOVQ  xs+24(FP), BX
	MOVQ  rb+32(FP), R8
	ADDQ  SI, R8
	MOVQ  R8, R11           // end of row 0
	Q4K_A_MASKS
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

q4ka2Block:
	Q4K_A_ROW(SI, 0, Y14)
	Q4K_A_ROW(R8, 32, Y15)
	ADDQ $144, SI
	ADDQ $144, R8
	ADDQ $1024, DX
	ADDQ $32, BX
	CMPQ SI, R11
	JB   q4ka2Block

	MOVQ y+0(FP), DI
	QA_HSUM(Y14, X14, (DI))
	QA_HSUM(Y15, X15, 4(DI))
	VZEROUPPER
	RET

// func q4kMatVecAVX2(y *float32, w *byte, xp, xs *float32, nb int)
TEXT ·q4kMatVecAVX2(SB), NOSPLIT, $32-40
	MOVQ   w+8(FP), SI
	MOVQ   xp+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   nb+32(FP), R11
	IMUL3Q $144, R11, R11
	ADDQ   SI, R11
	Q4K_A_MASKS
	VXORPS Y14, Y14, Y14

q4ka1Block:
	Q4K_A_ROW(SI, 0, Y14)
	ADDQ $144, SI
	ADDQ $1024, DX
	ADDQ $32, BX
	CMPQ SI, R11
	JB   q4ka1Block

	MOVQ y+0(FP), DI
	QA_HSUM(Y14, X14, (DI))
	VZEROUPPER
	RET

// func q8MatVec4AVX2(y *float32, w *byte, x *float32, rb, nb int)
TEXT ·q8MatVec4AVX2(SB), NOSPLIT, $0-40
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   rb+24(FP), AX
	LEAQ   (SI)(AX*1), R8
	LEAQ   (R8)(AX*1), R9
	LEAQ   (R9)(AX*1), R10
	MOVQ   SI, R11
	ADDQ   AX, R11
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

q8a4Block:
	VMOVUPS (DX), Y4
	VMOVUPS 32(DX), Y5
	VMOVUPS 64(DX), Y6
	VMOVUPS 96(DX), Y7
	Q8_A_BLOCK(SI, Y0)
	Q8_A_BLOCK(R8, Y1)
	Q8_A_BLOCK(R9, Y2)
	Q8_A_BLOCK(R10, Y3)
	ADDQ $34, SI
	ADDQ $34, R8
	ADDQ $34, R9
	ADDQ $34, R10
	ADDQ $128, DX
	CMPQ SI, R11
	JB   q8a4Block

	MOVQ y+0(FP), DI
	QA_HSUM(Y0, X0, (DI))
	QA_HSUM(Y1, X1, 4(DI))
	QA_HSUM(Y2, X2, 8(DI))
	QA_HSUM(Y3, X3, 12(DI))
	VZEROUPPER
	RET

// func q8MatVecAVX2(y *float32, w *byte, x *float32, nb int)
TEXT ·q8MatVecAVX2(SB), NOSPLIT, $0-32
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   nb+24(FP), R11
	IMUL3Q $34, R11, R11
	ADDQ   SI, R11
	VXORPS Y0, Y0, Y0

q8a1Block:
	VMOVUPS (DX), Y4
	VMOVUPS 32(DX), Y5
	VMOVUPS 64(DX), Y6
	VMOVUPS 96(DX), Y7
	Q8_A_BLOCK(SI, Y0)
	ADDQ $34, SI
	ADDQ $128, DX
	CMPQ SI, R11
	JB   q8a1Block

	MOVQ y+0(FP), DI
	QA_HSUM(Y0, X0, (DI))
	VZEROUPPER
	RET

// func q6kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)
// One Q6_K row: Σ_g d*sc[g] Σ q·x - Σ_g d*sc[g] * 32Σx[g] (xs holds 32Σx
// per 16).
TEXT ·q6kMatVecAVX2(SB), NOSPLIT, $320-40
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   nb+32(FP), R11
	IMUL3Q $210, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qab0f<>(SB), Y0
	VPBROADCASTD qab30<>(SB), Y1
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

q6ka1Block:
	QPFA(SI, 0)
	QPFA(SI, 64)
	QPFA(SI, 128)
	QPFA(SI, 192)
	Q6K_A_SCALES
	VFNMADD231PS (BX), Y4, Y14
	VFNMADD231PS 32(BX), Y5, Y15
	Q6K_A_HALF(0)
	Q6K_A_HALF(1)
	Q6K_A_GROUP(0, Y14)
	Q6K_A_GROUP(1, Y15)
	Q6K_A_GROUP(2, Y14)
	Q6K_A_GROUP(3, Y15)
	Q6K_A_GROUP(4, Y14)
	Q6K_A_GROUP(5, Y15)
	Q6K_A_GROUP(6, Y14)
	Q6K_A_GROUP(7, Y15)
	Q6K_A_GROUP(8, Y14)
	Q6K_A_GROUP(9, Y15)
	Q6K_A_GROUP(10, Y14)
	Q6K_A_GROUP(11, Y15)
	Q6K_A_GROUP(12, Y14)
	Q6K_A_GROUP(13, Y15)
	Q6K_A_GROUP(14, Y14)
	Q6K_A_GROUP(15, Y15)
	ADDQ $210, SI
	ADDQ $1024, DX
	ADDQ $64, BX
	CMPQ SI, R11
	JB   q6ka1Block

	VADDPS Y15, Y14, Y14
	MOVQ   y+0(FP), DI
	QA_HSUM(Y14, X14, (DI))
	VZEROUPPER
	RET

// Exact dequantization, AVX2.

// func q4kDequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q4kDequantAVX2(SB), NOSPLIT, $64-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $144, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qa0f<>(SB), Y0

q4kadBlock:
	Q4K_SCALES_A(SI)
	VMOVQ     AX, X4
	VPMOVZXBD X4, Y4
	VCVTDQ2PS Y4, Y4
	VMOVQ     CX, X5
	VPMOVZXBD X5, Y5
	VCVTDQ2PS Y5, Y5
	VPBROADCASTW (SI), X6
	VCVTPH2PS X6, Y6
	VPBROADCASTW 2(SI), X7
	VCVTPH2PS X7, Y7
	VMULPS    Y6, Y4, Y4
	VMULPS    Y7, Y5, Y5
	VMOVUPS   Y4, (SP)
	VMOVUPS   Y5, 32(SP)
	Q4K_A_DGROUP(0, 0, VPAND, Y0, 0)
	Q4K_A_DGROUP(0, 1, VPSRLD, $4, 128)
	Q4K_A_DGROUP(1, 2, VPAND, Y0, 256)
	Q4K_A_DGROUP(1, 3, VPSRLD, $4, 384)
	Q4K_A_DGROUP(2, 4, VPAND, Y0, 512)
	Q4K_A_DGROUP(2, 5, VPSRLD, $4, 640)
	Q4K_A_DGROUP(3, 6, VPAND, Y0, 768)
	Q4K_A_DGROUP(3, 7, VPSRLD, $4, 896)
	ADDQ $144, SI
	ADDQ $1024, DI
	CMPQ SI, R11
	JB   q4kadBlock
	VZEROUPPER
	RET

// func q6kDequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q6kDequantAVX2(SB), NOSPLIT, $320-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $210, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qab0f<>(SB), Y0
	VPBROADCASTD qab30<>(SB), Y1
	VPBROADCASTD qa20<>(SB), Y2

q6kadBlock:
	Q6K_A_SCALES
	Q6K_A_HALF(0)
	Q6K_A_HALF(1)
	Q6K_A_D16(0)
	Q6K_A_D16(1)
	Q6K_A_D16(2)
	Q6K_A_D16(3)
	Q6K_A_D16(4)
	Q6K_A_D16(5)
	Q6K_A_D16(6)
	Q6K_A_D16(7)
	Q6K_A_D16(8)
	Q6K_A_D16(9)
	Q6K_A_D16(10)
	Q6K_A_D16(11)
	Q6K_A_D16(12)
	Q6K_A_D16(13)
	Q6K_A_D16(14)
	Q6K_A_D16(15)
	ADDQ $210, SI
	ADDQ $1024, DI
	CMPQ SI, R11
	JB   q6kadBlock
	VZEROUPPER
	RET

// func q8DequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q8DequantAVX2(SB), NOSPLIT, $0-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $34, R11, R11
	ADDQ   SI, R11

q8adBlock:
	VPBROADCASTW (SI), X5
	VCVTPH2PS X5, Y5
	VPMOVSXBD 2(SI), Y8
	VPMOVSXBD 10(SI), Y9
	VPMOVSXBD 18(SI), Y10
	VPMOVSXBD 26(SI), Y11
	VCVTDQ2PS Y8, Y8
	VCVTDQ2PS Y9, Y9
	VCVTDQ2PS Y10, Y10
	VCVTDQ2PS Y11, Y11
	VMULPS    Y5, Y8, Y8
	VMULPS    Y5, Y9, Y9
	VMULPS    Y5, Y10, Y10
	VMULPS    Y5, Y11, Y11
	VMOVUPS   Y8, (DI)
	VMOVUPS   Y9, 32(DI)
	VMOVUPS   Y10, 64(DI)
	VMOVUPS   Y11, 96(DI)
	ADDQ $34, SI
	ADDQ $128, DI
	CMPQ SI, R11
	JB   q8adBlock
	VZEROUPPER
	RET

// func qTile3x4AVX2(acc *float32, w, x **float32, n int)
// acc[4r+c] = w[r][0:n] · x[c][0:n] for r < 3, c < 4 (n a multiple of 8).
TEXT ·qTile3x4AVX2(SB), NOSPLIT, $0-32
	MOVQ   w+8(FP), AX
	MOVQ   (AX), R8
	MOVQ   8(AX), R9
	MOVQ   16(AX), R10
	MOVQ   x+16(FP), AX
	MOVQ   (AX), R11
	MOVQ   8(AX), R12
	MOVQ   16(AX), R13
	MOVQ   24(AX), BX
	MOVQ   n+24(FP), CX
	XORQ   DX, DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

qt3Loop:
	VMOVUPS (R8)(DX*4), Y12
	VMOVUPS (R9)(DX*4), Y13
	VMOVUPS (R10)(DX*4), Y14
	VMOVUPS (R11)(DX*4), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y4
	VFMADD231PS Y15, Y14, Y8
	VMOVUPS (R12)(DX*4), Y15
	VFMADD231PS Y15, Y12, Y1
	VFMADD231PS Y15, Y13, Y5
	VFMADD231PS Y15, Y14, Y9
	VMOVUPS (R13)(DX*4), Y15
	VFMADD231PS Y15, Y12, Y2
	VFMADD231PS Y15, Y13, Y6
	VFMADD231PS Y15, Y14, Y10
	VMOVUPS (BX)(DX*4), Y15
	VFMADD231PS Y15, Y12, Y3
	VFMADD231PS Y15, Y13, Y7
	VFMADD231PS Y15, Y14, Y11
	ADDQ $8, DX
	CMPQ DX, CX
	JB   qt3Loop

	MOVQ acc+0(FP), DI
	QA_HSUM4(Y0, X0, Y1, X1, Y2, Y3, 0)
	QA_HSUM4(Y4, X4, Y5, X5, Y6, Y7, 16)
	QA_HSUM4(Y8, X8, Y9, X9, Y10, Y11, 32)
	VZEROUPPER
	RET
