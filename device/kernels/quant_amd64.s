//go:build amd64 && !purego

#include "textflag.h"

// Kernels for block-quantized weights (see quant.go for the method and
// quant_amd64.go for the Go side). Register use: SI walks the weight blocks,
// DX the activation row, BX its per-group sums, DI the outputs.

// Dword indexes 0 (x8) then 1 (x8): spreads [d, dmin] over two halves.
DATA qdperm<>+0(SB)/8, $0
DATA qdperm<>+8(SB)/8, $0
DATA qdperm<>+16(SB)/8, $0
DATA qdperm<>+24(SB)/8, $0
DATA qdperm<>+32(SB)/8, $0x0000000100000001
DATA qdperm<>+40(SB)/8, $0x0000000100000001
DATA qdperm<>+48(SB)/8, $0x0000000100000001
DATA qdperm<>+56(SB)/8, $0x0000000100000001
GLOBL qdperm<>(SB), RODATA|NOPTR, $64

DATA qd0f<>+0(SB)/4, $0x0000000f
GLOBL qd0f<>(SB), RODATA|NOPTR, $4

DATA qd30<>+0(SB)/4, $0x00000030
GLOBL qd30<>(SB), RODATA|NOPTR, $4

DATA qm0<>+0(SB)/4, $0x0000000f
GLOBL qm0<>(SB), RODATA|NOPTR, $4
DATA qm1<>+0(SB)/4, $0x000000f0
GLOBL qm1<>(SB), RODATA|NOPTR, $4
DATA qm2<>+0(SB)/4, $0x00000f00
GLOBL qm2<>(SB), RODATA|NOPTR, $4
DATA qm3<>+0(SB)/4, $0x0000f000
GLOBL qm3<>(SB), RODATA|NOPTR, $4

// Permutations [a x8, b x8] of the eight group scales: (a, b) = (0, 2),
// (1, 3), (4, 6), (5, 7).
DATA qi00<>+0(SB)/8, $0x0000000000000000
DATA qi00<>+8(SB)/8, $0x0000000000000000
DATA qi00<>+16(SB)/8, $0x0000000000000000
DATA qi00<>+24(SB)/8, $0x0000000000000000
DATA qi00<>+32(SB)/8, $0x0000000200000002
DATA qi00<>+40(SB)/8, $0x0000000200000002
DATA qi00<>+48(SB)/8, $0x0000000200000002
DATA qi00<>+56(SB)/8, $0x0000000200000002
GLOBL qi00<>(SB), RODATA|NOPTR, $64
DATA qi01<>+0(SB)/8, $0x0000000100000001
DATA qi01<>+8(SB)/8, $0x0000000100000001
DATA qi01<>+16(SB)/8, $0x0000000100000001
DATA qi01<>+24(SB)/8, $0x0000000100000001
DATA qi01<>+32(SB)/8, $0x0000000300000003
DATA qi01<>+40(SB)/8, $0x0000000300000003
DATA qi01<>+48(SB)/8, $0x0000000300000003
DATA qi01<>+56(SB)/8, $0x0000000300000003
GLOBL qi01<>(SB), RODATA|NOPTR, $64
DATA qi10<>+0(SB)/8, $0x0000000400000004
DATA qi10<>+8(SB)/8, $0x0000000400000004
DATA qi10<>+16(SB)/8, $0x0000000400000004
DATA qi10<>+24(SB)/8, $0x0000000400000004
DATA qi10<>+32(SB)/8, $0x0000000600000006
DATA qi10<>+40(SB)/8, $0x0000000600000006
DATA qi10<>+48(SB)/8, $0x0000000600000006
DATA qi10<>+56(SB)/8, $0x0000000600000006
GLOBL qi10<>(SB), RODATA|NOPTR, $64
DATA qi11<>+0(SB)/8, $0x0000000500000005
DATA qi11<>+8(SB)/8, $0x0000000500000005
DATA qi11<>+16(SB)/8, $0x0000000500000005
DATA qi11<>+24(SB)/8, $0x0000000500000005
DATA qi11<>+32(SB)/8, $0x0000000700000007
DATA qi11<>+40(SB)/8, $0x0000000700000007
DATA qi11<>+48(SB)/8, $0x0000000700000007
DATA qi11<>+56(SB)/8, $0x0000000700000007
GLOBL qi11<>(SB), RODATA|NOPTR, $64

DATA qd20<>+0(SB)/4, $0x00000020
GLOBL qd20<>(SB), RODATA|NOPTR, $4

DATA qc32<>+0(SB)/4, $0x42000000 // 32.0
GLOBL qc32<>(SB), RODATA|NOPTR, $4

// QPF prefetches the weight line OFF bytes past P into L2 from 16 KiB ahead:
// the hardware prefetcher alone let a one-thread matvec reach only half the
// read bandwidth (Q8_0, Zen 4); this brought it from 15 to 20 GB/s.
#define QPF(P, OFF) PREFETCHT1 16384+OFF(P)

// Q4_K scales: the 12 bytes at 4(P) hold eight 6-bit scales and eight 6-bit
// mins. Leaves the scales' bytes in AX and the mins' in CX (one byte each,
// in order), ready for VPMOVZXBD. Clobbers R12, R13.
#define Q4K_SCALES(P) \
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

// Q8_BLOCK adds d * Σ q·x for the Q8_0 block at OFF(P) into ACC, x in Z20,
// Z21. Uses Z6-Z8.
#define Q8_BLOCK(P, OFF, ACC) \
	QPF(P, OFF); \
	VPMOVSXBD OFF+2(P), Z6; \
	VPMOVSXBD OFF+18(P), Z7; \
	VCVTDQ2PS Z6, Z6; \
	VCVTDQ2PS Z7, Z7; \
	VMULPS    Z20, Z6, Z6; \
	VFMADD231PS Z21, Z7, Z6; \
	VPBROADCASTW OFF(P), Y8; \
	VCVTPH2PS Y8, Z8; \
	VFMADD231PS Z8, Z6, ACC

// Q_HSUM stores hsum(A) (a zmm, low halves YA, XA) at OUT. Clobbers A, X6.
#define Q_HSUM(A, YA, XA, OUT) \
	VEXTRACTF64X4 $1, A, Y6; \
	VADDPS    Y6, YA, YA; \
	VEXTRACTF32X4 $1, YA, X6; \
	VADDPS    X6, XA, XA; \
	VPERMILPS $0x4e, XA, X6; \
	VADDPS    X6, XA, XA; \
	VPERMILPS $0xb1, XA, X6; \
	VADDSS    X6, XA, XA; \
	VMOVSS    XA, OUT

// Q6K_PREP stores d*sc[g] (16 floats) at S(SP) for the Q6_K block at P and
// adds d*sc[g] * Σx[g] (per 16, at (BX)) into the zmm MIN. Uses Z4, Z5.
#define Q6K_PREP(P, S, MIN) \
	QPF(P, 0); \
	QPF(P, 64); \
	QPF(P, 128); \
	QPF(P, 192); \
	VPMOVSXBD 192(P), Z4; \
	VCVTDQ2PS Z4, Z4; \
	VPBROADCASTW 208(P), Y5; \
	VCVTPH2PS Y5, Z5; \
	VMULPS    Z5, Z4, Z4; \
	VMOVUPS   Z4, S(SP); \
	VFMADD231PS (BX), Z4, MIN

// Q6K_QUARTER handles l = 16s..16s+15 of half h of the block at P: the
// four groups g = 8h+2k+s (k = 0..3), x in Z20-Z23, scales at S(SP) (S
// already offset by 4*(8h+s)). Quant bytes: ql at QL = 64h+16s, qh at
// QH = 128+32h+16s. Uses Z6-Z12; Z28 = 0x30, Z29 = 0x0f per dword.
#define Q6K_QUARTER(P, QL, QH, S, A0, A1) \
	VPMOVZXBD QL(P), Z6; \
	VPMOVZXBD QL+32(P), Z7; \
	VPMOVZXBD QH(P), Z8; \
	VPSRLD    $4, Z6, Z10; \
	VPTERNLOGD $0xF8, Z28, Z8, Z10; \
	VPSLLD    $4, Z8, Z9; \
	VPANDD    Z28, Z9, Z9; \
	VPTERNLOGD $0xEC, Z29, Z9, Z6; \
	VPSRLD    $4, Z7, Z12; \
	VPSRLD    $2, Z8, Z11; \
	VPTERNLOGD $0xF8, Z28, Z11, Z12; \
	VPSLLD    $2, Z8, Z11; \
	VPANDD    Z28, Z11, Z11; \
	VPTERNLOGD $0xEC, Z29, Z11, Z7; \
	VCVTDQ2PS Z6, Z6; \
	VCVTDQ2PS Z7, Z7; \
	VCVTDQ2PS Z10, Z10; \
	VCVTDQ2PS Z12, Z12; \
	VMULPS    Z20, Z6, Z6; \
	VMULPS    Z21, Z7, Z7; \
	VMULPS    Z22, Z10, Z10; \
	VMULPS    Z23, Z12, Z12; \
	VFMADD231PS.BCST S(SP), Z6, A0; \
	VFMADD231PS.BCST S+8(SP), Z7, A1; \
	VFMADD231PS.BCST S+16(SP), Z10, A0; \
	VFMADD231PS.BCST S+24(SP), Z12, A1

// Q6K_LOADX loads x[128h+16s + 32k] (k = 0..3) for OFF = 4*(128h+16s).
#define Q6K_LOADX(OFF) \
	VMOVUPS OFF(DX), Z20; \
	VMOVUPS OFF+128(DX), Z21; \
	VMOVUPS OFF+256(DX), Z22; \
	VMOVUPS OFF+384(DX), Z23

// Q6K_REDUCE stores hsum(A0 + A1) - 32*hsum(MIN) at OUT.
#define Q6K_REDUCE(A0, A1, YA0, XA0, MIN, YMIN, XMIN, OUT) \
	VADDPS    A1, A0, A0; \
	VMULPS.BCST qc32<>(SB), MIN, MIN; \
	VSUBPS    MIN, A0, A0; \
	Q_HSUM(A0, YA0, XA0, OUT)

// Q4K_HALF: half z of the block at P (qs bytes 16+64z..), x' at
// X(DX) (= 1024*sb + 512z), scale/min vector in SC, row total in TOT.
// IH0, IH1: permutation indexes picking [dsc(4z+h) x8, dsc(4z+2+h) x8].
#define Q4K_HALF(P, Q, X, SC, IH0, IH1, TOT) \
	VMOVDQU32 Q(P), Z6; \
	VPSRLD    $16, Z6, Z7; \
	VPANDD    Z26, Z6, Z8; \
	VCVTDQ2PS Z8, Z8; \
	VMULPS    X(DX), Z8, Z8; \
	VPANDD    Z28, Z6, Z9; \
	VCVTDQ2PS Z9, Z9; \
	VFMADD231PS X+64(DX), Z9, Z8; \
	VPANDD    Z26, Z7, Z9; \
	VCVTDQ2PS Z9, Z9; \
	VFMADD231PS X+128(DX), Z9, Z8; \
	VPANDD    Z28, Z7, Z9; \
	VCVTDQ2PS Z9, Z9; \
	VFMADD231PS X+192(DX), Z9, Z8; \
	VPANDD    Z27, Z6, Z10; \
	VCVTDQ2PS Z10, Z10; \
	VMULPS    X+256(DX), Z10, Z10; \
	VPANDD    Z29, Z6, Z11; \
	VCVTDQ2PS Z11, Z11; \
	VFMADD231PS X+320(DX), Z11, Z10; \
	VPANDD    Z27, Z7, Z11; \
	VCVTDQ2PS Z11, Z11; \
	VFMADD231PS X+384(DX), Z11, Z10; \
	VPANDD    Z29, Z7, Z11; \
	VCVTDQ2PS Z11, Z11; \
	VFMADD231PS X+448(DX), Z11, Z10; \
	VPERMPS   SC, IH0, Z12; \
	VFMADD231PS Z12, Z8, TOT; \
	VPERMPS   SC, IH1, Z12; \
	VFMADD231PS Z12, Z10, TOT

// Q4K_PREP: Z4-like SC = [d*sc[0..7], dmin*m[0..7]] for the block at P,
// and MIN += dmin*m * Σx (Σx per 32 at (BX)). Uses Z5.
#define Q4K_PREP(P, SC, YSC, MIN) \
	Q4K_SCALES(P); \
	VMOVQ     AX, X5; \
	VPINSRQ   $1, CX, X5, X5; \
	VPMOVZXBD X5, SC; \
	VCVTDQ2PS SC, SC; \
	VMOVD     (P), X5; \
	VCVTPH2PS X5, X5; \
	VPERMPS   Z5, Z30, Z5; \
	VMULPS    Z5, SC, SC; \
	VEXTRACTF64X4 $1, SC, Y5; \
	VFMADD231PS (BX), Y5, MIN

#define Q4K_ROW(P, SC, YSC, TOT, MIN) \
	QPF(P, 0); \
	QPF(P, 64); \
	QPF(P, 128); \
	Q4K_PREP(P, SC, YSC, MIN); \
	Q4K_HALF(P, 16, 0, SC, Z22, Z23, TOT); \
	Q4K_HALF(P, 80, 512, SC, Z24, Z25, TOT)

#define Q4K_CONSTS \
	VMOVDQU32 qdperm<>(SB), Z30; \
	VPBROADCASTD qm0<>(SB), Z26; \
	VPBROADCASTD qm1<>(SB), Z27; \
	VPBROADCASTD qm2<>(SB), Z28; \
	VPBROADCASTD qm3<>(SB), Z29; \
	VMOVDQU32 qi00<>(SB), Z22; \
	VMOVDQU32 qi01<>(SB), Z23; \
	VMOVDQU32 qi10<>(SB), Z24; \
	VMOVDQU32 qi11<>(SB), Z25

// Q4K_OUT stores hsum(TOT) - hsum(MIN) (MIN a ymm).
#define Q4K_OUT(TOT, YTOT, XTOT, MIN, OUT) \
	VEXTRACTF64X4 $1, TOT, Y6; \
	VADDPS    Y6, YTOT, YTOT; \
	VSUBPS    MIN, YTOT, YTOT; \
	VEXTRACTF32X4 $1, YTOT, X6; \
	VADDPS    X6, XTOT, XTOT; \
	VPERMILPS $0x4e, XTOT, X6; \
	VADDPS    X6, XTOT, XTOT; \
	VPERMILPS $0xb1, XTOT, X6; \
	VADDSS    X6, XTOT, XTOT; \
	VMOVSS    XTOT, OUT

// QT_HSUM4 stores the horizontal sums of four zmm accumulators (Z registers
// below 16, named as zmm, ymm and, for the first two, xmm) as four consecutive
// floats at OFF(DI). Clobbers them and Y24-Y27.
#define QT_HSUM4(ZA, YA, XA, ZB, YB, XB, ZC, YC, ZD, YD, OFF) \
	VEXTRACTF64X4 $1, ZA, Y24; \
	VADDPS    Y24, YA, YA; \
	VEXTRACTF64X4 $1, ZB, Y25; \
	VADDPS    Y25, YB, YB; \
	VEXTRACTF64X4 $1, ZC, Y26; \
	VADDPS    Y26, YC, YC; \
	VEXTRACTF64X4 $1, ZD, Y27; \
	VADDPS    Y27, YD, YD; \
	VHADDPS   YB, YA, YA; \
	VHADDPS   YD, YC, YC; \
	VHADDPS   YC, YA, YA; \
	VEXTRACTF128 $1, YA, XB; \
	VADDPS    XB, XA, XA; \
	VMOVUPS   XA, OFF(DI)

// Q4KD_16: 16 quants from the bytes at Q(SI) (low nibbles with OP = VPANDD
// and A = Z29, high with OP = VPSRLD and A = $4), times d*sc and minus
// dmin*m of group G (at 4G(SP), 32+4G(SP)), stored at OUT(DI).
#define Q4KD_16(Q, G, OUT, OP, A) \
	VPMOVZXBD Q(SI), Z6; \
	OP        A, Z6, Z6; \
	VCVTDQ2PS Z6, Z6; \
	VMULPS.BCST 4*(G)(SP), Z6, Z6; \
	VSUBPS.BCST 32+4*(G)(SP), Z6, Z6; \
	VMOVUPS   Z6, OUT(DI)

#define Q4KD_CHUNK(C) \
	Q4KD_16(16+32*C, 2*C, 256*C, VPANDD, Z29); \
	Q4KD_16(32+32*C, 2*C, 256*C+64, VPANDD, Z29); \
	Q4KD_16(16+32*C, 2*C+1, 256*C+128, VPSRLD, $4); \
	Q4KD_16(32+32*C, 2*C+1, 256*C+192, VPSRLD, $4)

// Q6KD_16: the 16 quants of group g = 8h+2k+s built as in Q6K_QUARTER,
// already in Zq, minus 32, converted, times d*sc[g] (at 4g(SP)), stored.
#define Q6KD_STORE(ZQ, G, OUT) \
	VPSUBD    Z27, ZQ, ZQ; \
	VCVTDQ2PS ZQ, ZQ; \
	VMULPS.BCST 4*(G)(SP), ZQ, ZQ; \
	VMOVUPS   ZQ, OUT(DI)

#define Q6KD_QUARTER(H, S) \
	VPMOVZXBD 64*H+16*S(SI), Z6; \
	VPMOVZXBD 64*H+32+16*S(SI), Z7; \
	VPMOVZXBD 128+32*H+16*S(SI), Z8; \
	VPSRLD    $4, Z6, Z10; \
	VPTERNLOGD $0xF8, Z28, Z8, Z10; \
	VPSLLD    $4, Z8, Z9; \
	VPANDD    Z28, Z9, Z9; \
	VPTERNLOGD $0xEC, Z29, Z9, Z6; \
	VPSRLD    $4, Z7, Z12; \
	VPSRLD    $2, Z8, Z11; \
	VPTERNLOGD $0xF8, Z28, Z11, Z12; \
	VPSLLD    $2, Z8, Z11; \
	VPANDD    Z28, Z11, Z11; \
	VPTERNLOGD $0xEC, Z29, Z11, Z7; \
	Q6KD_STORE(Z6, 8*H+S, 512*H+64*S); \
	Q6KD_STORE(Z7, 8*H+2+S, 512*H+128+64*S); \
	Q6KD_STORE(Z10, 8*H+4+S, 512*H+256+64*S); \
	Q6KD_STORE(Z12, 8*H+6+S, 512*H+384+64*S)

// func q8MatVec4AVX512(y *float32, w *byte, x *float32, rb, nb int)
// Four consecutive Q8_0 rows of nb blocks, rb bytes apart.
TEXT ·q8MatVec4AVX512(SB), NOSPLIT, $0-40
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   rb+24(FP), AX
	LEAQ   (SI)(AX*1), R8
	LEAQ   (R8)(AX*1), R9
	LEAQ   (R9)(AX*1), R10
	MOVQ   SI, R11
	ADDQ   AX, R11
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13

q8x4Block:
	VMOVUPS (DX), Z20
	VMOVUPS 64(DX), Z21
	Q8_BLOCK(SI, 0, Z10)
	Q8_BLOCK(R8, 0, Z11)
	Q8_BLOCK(R9, 0, Z12)
	Q8_BLOCK(R10, 0, Z13)
	ADDQ $34, SI
	ADDQ $34, R8
	ADDQ $34, R9
	ADDQ $34, R10
	ADDQ $128, DX
	CMPQ SI, R11
	JB   q8x4Block

	MOVQ y+0(FP), DI
	Q_HSUM(Z10, Y10, X10, (DI))
	Q_HSUM(Z11, Y11, X11, 4(DI))
	Q_HSUM(Z12, Y12, X12, 8(DI))
	Q_HSUM(Z13, Y13, X13, 12(DI))
	VZEROUPPER
	RET

// func q8MatVecAVX512(y *float32, w *byte, x *float32, nb int)
TEXT ·q8MatVecAVX512(SB), NOSPLIT, $0-32
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   nb+24(FP), R11
	IMUL3Q $34, R11, R11
	ADDQ   SI, R11
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11

q8x1Block:
	VMOVUPS (DX), Z20
	VMOVUPS 64(DX), Z21
	Q8_BLOCK(SI, 0, Z10)
	ADDQ $34, SI
	ADDQ $128, DX
	CMPQ SI, R11
	JAE  q8x1Done
	VMOVUPS (DX), Z20
	VMOVUPS 64(DX), Z21
	Q8_BLOCK(SI, 0, Z11)
	ADDQ $34, SI
	ADDQ $128, DX
	CMPQ SI, R11
	JB   q8x1Block

q8x1Done:
	VADDPS Z11, Z10, Z10
	MOVQ   y+0(FP), DI
	Q_HSUM(Z10, Y10, X10, (DI))
	VZEROUPPER
	RET

// func q6kMatVec4AVX512(y *float32, w *byte, x, xs *float32, rb, nb int)
// Four consecutive Q6_K rows: y = Σ_g d*sc[g] * Σ q·x - 32 Σ_g d*sc[g] * Σx[g]
// (q the unsigned 6-bit quants, Σx per 16 from xs).
TEXT ·q6kMatVec4AVX512(SB), NOSPLIT, $256-48
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   rb+32(FP), AX
	LEAQ   (SI)(AX*1), R8
	LEAQ   (R8)(AX*1), R9
	LEAQ   (R9)(AX*1), R10
	MOVQ   SI, R11
	ADDQ   AX, R11
	VPBROADCASTD qd30<>(SB), Z28
	VPBROADCASTD qd0f<>(SB), Z29
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z30, Z30, Z30

q6k4Block:
	Q6K_PREP(SI, 0, Z24)
	Q6K_PREP(R8, 64, Z25)
	Q6K_PREP(R9, 128, Z26)
	Q6K_PREP(R10, 192, Z27)

	Q6K_LOADX(0)
	Q6K_QUARTER(SI, 0, 128, 0, Z13, Z14)
	Q6K_QUARTER(R8, 0, 128, 64, Z15, Z16)
	Q6K_QUARTER(R9, 0, 128, 128, Z17, Z18)
	Q6K_QUARTER(R10, 0, 128, 192, Z19, Z30)
	Q6K_LOADX(64)
	Q6K_QUARTER(SI, 16, 144, 4, Z13, Z14)
	Q6K_QUARTER(R8, 16, 144, 68, Z15, Z16)
	Q6K_QUARTER(R9, 16, 144, 132, Z17, Z18)
	Q6K_QUARTER(R10, 16, 144, 196, Z19, Z30)
	Q6K_LOADX(512)
	Q6K_QUARTER(SI, 64, 160, 32, Z13, Z14)
	Q6K_QUARTER(R8, 64, 160, 96, Z15, Z16)
	Q6K_QUARTER(R9, 64, 160, 160, Z17, Z18)
	Q6K_QUARTER(R10, 64, 160, 224, Z19, Z30)
	Q6K_LOADX(576)
	Q6K_QUARTER(SI, 80, 176, 36, Z13, Z14)
	Q6K_QUARTER(R8, 80, 176, 100, Z15, Z16)
	Q6K_QUARTER(R9, 80, 176, 164, Z17, Z18)
	Q6K_QUARTER(R10, 80, 176, 228, Z19, Z30)

	ADDQ $210, SI
	ADDQ $210, R8
	ADDQ $210, R9
	ADDQ $210, R10
	ADDQ $1024, DX
	ADDQ $64, BX
	CMPQ SI, R11
	JB   q6k4Block

	MOVQ y+0(FP), DI
	Q6K_REDUCE(Z13, Z14, Y13, X13, Z24, Y24, X24, (DI))
	Q6K_REDUCE(Z15, Z16, Y15, X15, Z25, Y25, X25, 4(DI))
	Q6K_REDUCE(Z17, Z18, Y17, X17, Z26, Y26, X26, 8(DI))
	Q6K_REDUCE(Z19, Z30, Y19, X19, Z27, Y27, X27, 12(DI))
	VZEROUPPER
	RET

// func q6kMatVecAVX512(y *float32, w *byte, x, xs *float32, nb int)
TEXT ·q6kMatVecAVX512(SB), NOSPLIT, $64-40
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   nb+32(FP), R11
	IMUL3Q $210, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qd30<>(SB), Z28
	VPBROADCASTD qd0f<>(SB), Z29
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z24, Z24, Z24

q6k1Block:
	Q6K_PREP(SI, 0, Z24)
	Q6K_LOADX(0)
	Q6K_QUARTER(SI, 0, 128, 0, Z13, Z14)
	Q6K_LOADX(64)
	Q6K_QUARTER(SI, 16, 144, 4, Z13, Z14)
	Q6K_LOADX(512)
	Q6K_QUARTER(SI, 64, 160, 32, Z13, Z14)
	Q6K_LOADX(576)
	Q6K_QUARTER(SI, 80, 176, 36, Z13, Z14)
	ADDQ $210, SI
	ADDQ $1024, DX
	ADDQ $64, BX
	CMPQ SI, R11
	JB   q6k1Block

	MOVQ y+0(FP), DI
	Q6K_REDUCE(Z13, Z14, Y13, X13, Z24, Y24, X24, (DI))
	VZEROUPPER
	RET

// Q4_K: the quants stay in their bytes. A dword lane of 64
// qs bytes holds 8 nibbles; masking nibble (b, h) in place (b the byte,
// h low/high) and converting gives q * 2^s' exactly (s' = 8(b&1) + 4h, the
// top two bytes first shifted down 16), and the activation row is prepared
// once per call in the matching order and scaled by 2^-s' (see q4kPrep).
// Lanes 0-7 of a 64-byte half z belong to group 4z+h, lanes 8-15 to
// 4z+2+h, so the group scales are applied per half with a permuted vector.

// func q4kMatVec4AVX512(y *float32, w *byte, xp, xs *float32, rb, nb int)
TEXT ·q4kMatVec4AVX512(SB), NOSPLIT, $0-48
	MOVQ      w+8(FP), SI
	MOVQ      xp+16(FP), DX
	MOVQ      xs+24(FP), BX
	MOVQ      rb+32(FP), AX
	LEAQ      (SI)(AX*1), R8
	LEAQ      (R8)(AX*1), R9
	LEAQ      (R9)(AX*1), R10
	MOVQ      SI, R11
	ADDQ      AX, R11
	Q4K_CONSTS
	VPXORD    Z14, Z14, Z14
	VPXORD    Z15, Z15, Z15
	VPXORD    Z16, Z16, Z16
	VPXORD    Z17, Z17, Z17
	VPXORD    Z18, Z18, Z18
	VPXORD    Z19, Z19, Z19
	VPXORD    Z20, Z20, Z20
	VPXORD    Z21, Z21, Z21

q4k2x4Block:
	Q4K_ROW(SI, Z4, Y4, Z14, Y18)
	Q4K_ROW(R8, Z4, Y4, Z15, Y19)
	Q4K_ROW(R9, Z4, Y4, Z16, Y20)
	Q4K_ROW(R10, Z4, Y4, Z17, Y21)
	ADDQ $144, SI
	ADDQ $144, R8
	ADDQ $144, R9
	ADDQ $144, R10
	ADDQ $1024, DX
	ADDQ $32, BX
	CMPQ SI, R11
	JB   q4k2x4Block

	MOVQ y+0(FP), DI
	Q4K_OUT(Z14, Y14, X14, Y18, (DI))
	Q4K_OUT(Z15, Y15, X15, Y19, 4(DI))
	Q4K_OUT(Z16, Y16, X16, Y20, 8(DI))
	Q4K_OUT(Z17, Y17, X17, Y21, 12(DI))
	VZEROUPPER
	RET

// func q4kMatVecAVX512(y *float32, w *byte, xp, xs *float32, nb int)
TEXT ·q4kMatVecAVX512(SB), NOSPLIT, $0-40
	MOVQ      w+8(FP), SI
	MOVQ      xp+16(FP), DX
	MOVQ      xs+24(FP), BX
	MOVQ      nb+32(FP), R11
	IMUL3Q    $144, R11, R11
	ADDQ      SI, R11
	Q4K_CONSTS
	VPXORD    Z14, Z14, Z14
	VPXORD    Z18, Z18, Z18

q4k2x1Block:
	Q4K_ROW(SI, Z4, Y4, Z14, Y18)
	ADDQ $144, SI
	ADDQ $1024, DX
	ADDQ $32, BX
	CMPQ SI, R11
	JB   q4k2x1Block

	MOVQ y+0(FP), DI
	Q4K_OUT(Z14, Y14, X14, Y18, (DI))
	VZEROUPPER
	RET

// Exact dequantization (bit-identical with quant.DequantizeRow: the same
// float32 operations, never fused) for the batched products.

// func q4kDequantAVX512(dst *float32, src *byte, nb int)
TEXT ·q4kDequantAVX512(SB), NOSPLIT, $64-24
	MOVQ      dst+0(FP), DI
	MOVQ      src+8(FP), SI
	MOVQ      nb+16(FP), R11
	IMUL3Q    $144, R11, R11
	ADDQ      SI, R11
	VMOVDQU32 qdperm<>(SB), Z30
	VPBROADCASTD qd0f<>(SB), Z29

q4kdBlock:
	Q4K_SCALES(SI)
	VMOVQ     AX, X4
	VPINSRQ   $1, CX, X4, X4
	VPMOVZXBD X4, Z4
	VCVTDQ2PS Z4, Z4
	VMOVD     (SI), X5
	VCVTPH2PS X5, X5
	VPERMPS   Z5, Z30, Z5
	VMULPS    Z5, Z4, Z4
	VMOVUPS   Z4, (SP)
	Q4KD_CHUNK(0)
	Q4KD_CHUNK(1)
	Q4KD_CHUNK(2)
	Q4KD_CHUNK(3)
	ADDQ $144, SI
	ADDQ $1024, DI
	CMPQ SI, R11
	JB   q4kdBlock
	VZEROUPPER
	RET

// func q6kDequantAVX512(dst *float32, src *byte, nb int)
TEXT ·q6kDequantAVX512(SB), NOSPLIT, $64-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $210, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qd30<>(SB), Z28
	VPBROADCASTD qd0f<>(SB), Z29
	VPBROADCASTD qd20<>(SB), Z27

q6kdBlock:
	VPMOVSXBD 192(SI), Z4
	VCVTDQ2PS Z4, Z4
	VPBROADCASTW 208(SI), Y5
	VCVTPH2PS Y5, Z5
	VMULPS    Z4, Z5, Z4
	VMOVUPS   Z4, (SP)
	Q6KD_QUARTER(0, 0)
	Q6KD_QUARTER(0, 1)
	Q6KD_QUARTER(1, 0)
	Q6KD_QUARTER(1, 1)
	ADDQ $210, SI
	ADDQ $1024, DI
	CMPQ SI, R11
	JB   q6kdBlock
	VZEROUPPER
	RET

// func q8DequantAVX512(dst *float32, src *byte, nb int)
TEXT ·q8DequantAVX512(SB), NOSPLIT, $0-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $34, R11, R11
	ADDQ   SI, R11

q8dBlock:
	VPBROADCASTW (SI), Y5
	VCVTPH2PS Y5, Z5
	VPMOVSXBD 2(SI), Z6
	VPMOVSXBD 18(SI), Z7
	VCVTDQ2PS Z6, Z6
	VCVTDQ2PS Z7, Z7
	VMULPS    Z5, Z6, Z6
	VMULPS    Z5, Z7, Z7
	VMOVUPS   Z6, (DI)
	VMOVUPS   Z7, 64(DI)
	ADDQ $34, SI
	ADDQ $128, DI
	CMPQ SI, R11
	JB   q8dBlock
	VZEROUPPER
	RET

// func qTile4x4AVX512(acc *float32, w, x **float32, n int)
// acc[4r+c] = w[r][0:n] · x[c][0:n] for r, c < 4 (n a multiple of 16):
// sixteen register accumulators, each weight and activation vector loaded
// once per step.
TEXT ·qTile4x4AVX512(SB), NOSPLIT, $0-32
	MOVQ   w+8(FP), AX
	MOVQ   (AX), R8
	MOVQ   8(AX), R9
	MOVQ   16(AX), R10
	MOVQ   24(AX), R11
	MOVQ   x+16(FP), AX
	MOVQ   (AX), R12
	MOVQ   8(AX), R13
	MOVQ   16(AX), R14
	MOVQ   24(AX), BX
	MOVQ   n+24(FP), CX
	XORQ   DX, DX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

qt4Loop:
	VMOVUPS (R8)(DX*4), Z16
	VMOVUPS (R9)(DX*4), Z17
	VMOVUPS (R10)(DX*4), Z18
	VMOVUPS (R11)(DX*4), Z19
	VMOVUPS (R12)(DX*4), Z20
	VFMADD231PS Z20, Z16, Z0
	VFMADD231PS Z20, Z17, Z4
	VFMADD231PS Z20, Z18, Z8
	VFMADD231PS Z20, Z19, Z12
	VMOVUPS (R13)(DX*4), Z21
	VFMADD231PS Z21, Z16, Z1
	VFMADD231PS Z21, Z17, Z5
	VFMADD231PS Z21, Z18, Z9
	VFMADD231PS Z21, Z19, Z13
	VMOVUPS (R14)(DX*4), Z22
	VFMADD231PS Z22, Z16, Z2
	VFMADD231PS Z22, Z17, Z6
	VFMADD231PS Z22, Z18, Z10
	VFMADD231PS Z22, Z19, Z14
	VMOVUPS (BX)(DX*4), Z23
	VFMADD231PS Z23, Z16, Z3
	VFMADD231PS Z23, Z17, Z7
	VFMADD231PS Z23, Z18, Z11
	VFMADD231PS Z23, Z19, Z15
	ADDQ $16, DX
	CMPQ DX, CX
	JB   qt4Loop

	MOVQ acc+0(FP), DI
	QT_HSUM4(Z0, Y0, X0, Z1, Y1, X1, Z2, Y2, Z3, Y3, 0)
	QT_HSUM4(Z4, Y4, X4, Z5, Y5, X5, Z6, Y6, Z7, Y7, 16)
	QT_HSUM4(Z8, Y8, X8, Z9, Y9, X9, Z10, Y10, Z11, Y11, 32)
	QT_HSUM4(Z12, Y12, X12, Z13, Y13, X13, Z14, Y14, Z15, Y15, 48)
	VZEROUPPER
	RET

// func qReadAVX2(p *byte, n int) uint64
// ORs together n bytes (n a multiple of 128) with 32-byte loads, four
// independent accumulators: a streaming read with no other work.
TEXT ·qReadAVX2(SB), NOSPLIT, $0-24
	MOVQ  p+0(FP), SI
	MOVQ  n+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

qrdLoop:
	CMPQ CX, $128
	JB   qrdDone
	VPOR (SI), Y0, Y0
	VPOR 32(SI), Y1, Y1
	VPOR 64(SI), Y2, Y2
	VPOR 96(SI), Y3, Y3
	ADDQ $128, SI
	SUBQ $128, CX
	JMP  qrdLoop

qrdDone:
	VPOR         Y1, Y0, Y0
	VPOR         Y3, Y2, Y2
	VPOR         Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPOR         X1, X0, X0
	VPSRLDQ      $8, X0, X1
	VPOR         X1, X0, X0
	VMOVQ        X0, AX
	MOVQ         AX, ret+16(FP)
	VZEROUPPER
	RET
