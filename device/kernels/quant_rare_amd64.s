//go:build amd64 && !purego

#include "textflag.h"

// AVX2 kernels for the less common block types (Q5_K, Q3_K, Q2_K and the
// 32-element legacy types), used at both the AVX2 and AVX-512 levels (on
// Zen 4 the 8-lane forms of these kernels run as fast as 16-lane ones). The
// k-quants unpack each super-block's quants to bytes on the stack (in element
// order), store the group scales next to them, and share one group-dot loop;
// the legacy types widen each 32-element block in registers. Offsets and
// mins are applied through per-group sums of x prepared once per call.
// Stack: 0(SP) group scales (up to 16 floats), 64(SP) the quants (256 bytes).

DATA qr0f<>+0(SB)/4, $0x0f0f0f0f
GLOBL qr0f<>(SB), RODATA|NOPTR, $4
DATA qr03<>+0(SB)/4, $0x03030303
GLOBL qr03<>(SB), RODATA|NOPTR, $4
DATA qr04<>+0(SB)/4, $0x04040404
GLOBL qr04<>(SB), RODATA|NOPTR, $4
DATA qr10<>+0(SB)/4, $0x10101010
GLOBL qr10<>(SB), RODATA|NOPTR, $4
DATA qrd0f<>+0(SB)/4, $0x0000000f
GLOBL qrd0f<>(SB), RODATA|NOPTR, $4
DATA qrd10<>+0(SB)/4, $0x00000010
GLOBL qrd10<>(SB), RODATA|NOPTR, $4
DATA qrd20<>+0(SB)/4, $0x00000020
GLOBL qrd20<>(SB), RODATA|NOPTR, $4
DATA qrd04<>+0(SB)/4, $0x00000004
GLOBL qrd04<>(SB), RODATA|NOPTR, $4
DATA qrd08<>+0(SB)/4, $0x00000008
GLOBL qrd08<>(SB), RODATA|NOPTR, $4

// Shift counts 0..31 for the 32 fifth bits of a Q5_0/Q5_1 block.
DATA qrsh<>+0(SB)/8, $0x0000000100000000
DATA qrsh<>+8(SB)/8, $0x0000000300000002
DATA qrsh<>+16(SB)/8, $0x0000000500000004
DATA qrsh<>+24(SB)/8, $0x0000000700000006
DATA qrsh<>+32(SB)/8, $0x0000000900000008
DATA qrsh<>+40(SB)/8, $0x0000000b0000000a
DATA qrsh<>+48(SB)/8, $0x0000000d0000000c
DATA qrsh<>+56(SB)/8, $0x0000000f0000000e
DATA qrsh<>+64(SB)/8, $0x0000001100000010
DATA qrsh<>+72(SB)/8, $0x0000001300000012
DATA qrsh<>+80(SB)/8, $0x0000001500000014
DATA qrsh<>+88(SB)/8, $0x0000001700000016
DATA qrsh<>+96(SB)/8, $0x0000001900000018
DATA qrsh<>+104(SB)/8, $0x0000001b0000001a
DATA qrsh<>+112(SB)/8, $0x0000001d0000001c
DATA qrsh<>+120(SB)/8, $0x0000001f0000001e
GLOBL qrsh<>(SB), RODATA|NOPTR, $128

// QPFR prefetches the weight line OFF bytes past P into L2 from 16 KiB ahead:
// the hardware prefetcher alone let a one-thread matvec reach only half the
// read bandwidth (Q8_0, Zen 4); this brought it from 15 to 20 GB/s.
#define QPFR(P, OFF) PREFETCHT1 16384+OFF(P)

// QR_HSUM stores the horizontal sum of ymm Y (xmm X) at OUT. Clobbers X13.
#define QR_HSUM(Y, X, OUT) \
	VEXTRACTF128 $1, Y, X13; \
	VADDPS    X13, X, X; \
	VPERMILPS $0x4e, X, X13; \
	VADDPS    X13, X, X; \
	VPERMILPS $0xb1, X, X13; \
	VADDSS    X13, X, X; \
	VMOVSS    X, OUT

// QR_G16: ACC += scale[G] * Σ q·x over the 16 quants of group G.
#define QR_G16(G, ACC) \
	VPMOVZXBD 64+16*(G)(SP), Y8; \
	VPMOVZXBD 72+16*(G)(SP), Y9; \
	VCVTDQ2PS Y8, Y8; \
	VCVTDQ2PS Y9, Y9; \
	VMULPS    64*(G)(DX), Y8, Y8; \
	VFMADD231PS 64*(G)+32(DX), Y9, Y8; \
	VBROADCASTSS 4*(G)(SP), Y10; \
	VFMADD231PS Y10, Y8, ACC

// QR_G32: the same over the 32 quants of group G.
#define QR_G32(G, ACC) \
	VPMOVZXBD 64+32*(G)(SP), Y8; \
	VPMOVZXBD 72+32*(G)(SP), Y9; \
	VPMOVZXBD 80+32*(G)(SP), Y11; \
	VPMOVZXBD 88+32*(G)(SP), Y12; \
	VCVTDQ2PS Y8, Y8; \
	VCVTDQ2PS Y9, Y9; \
	VCVTDQ2PS Y11, Y11; \
	VCVTDQ2PS Y12, Y12; \
	VMULPS    128*(G)(DX), Y8, Y8; \
	VMULPS    128*(G)+32(DX), Y9, Y9; \
	VFMADD231PS 128*(G)+64(DX), Y11, Y8; \
	VFMADD231PS 128*(G)+96(DX), Y12, Y9; \
	VADDPS    Y9, Y8, Y8; \
	VBROADCASTSS 4*(G)(SP), Y10; \
	VFMADD231PS Y10, Y8, ACC

// Q5K_SCALES: the Q4_K/Q5_K 6-bit scales at 4(SI) as bytes: scales in AX,
// mins in CX. Clobbers R12, R13.
#define Q5K_SCALES \
	MOVL  4(SI), AX; \
	MOVL  8(SI), CX; \
	MOVL  12(SI), R12; \
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

// Q5K_CHUNK: bytes 48+32C.. (low nibbles: group 2C, high: 2C+1) with their
// fifth bits (bits 2C and 2C+1 of qh, in Y10) to 64+64C(SP). The shifts
// SL/SR move bit 2C (resp. 2C+1) of each qh byte to bit 4; word shifts
// only leak bits that the 0x10 mask clears. Y0 = 0x0f, Y1 = 0x10 bytes.
#define Q5K_CHUNK(C, SHLO, NLO, SHHI, NHI) \
	VMOVDQU   48+32*(C)(SI), Y8; \
	VPAND     Y0, Y8, Y9; \
	SHLO      $NLO, Y10, Y11; \
	VPAND     Y1, Y11, Y11; \
	VPOR      Y11, Y9, Y9; \
	VMOVDQU   Y9, 64+64*(C)(SP); \
	VPSRLW    $4, Y8, Y9; \
	VPAND     Y0, Y9, Y9; \
	SHHI      $NHI, Y10, Y11; \
	VPAND     Y1, Y11, Y11; \
	VPOR      Y11, Y9, Y9; \
	VMOVDQU   Y9, 96+64*(C)(SP)

// Q2K_PART: the 32 two-bit quants of bits 2S..2S+1 of qs[32H..32H+32]
// (elements 128H+32S..) to 64+128H+32S(SP). Y8 holds those qs bytes;
// Y0 = 0x03 bytes.
#define Q2K_PART(H, S) \
	VPSRLW    $(2*(S)), Y8, Y9; \
	VPAND     Y0, Y9, Y9; \
	VMOVDQU   Y9, 64+128*(H)+32*(S)(SP)

#define Q2K_HALF(H) \
	VMOVDQU   16+32*(H)(SI), Y8; \
	Q2K_PART(H, 0); \
	Q2K_PART(H, 1); \
	Q2K_PART(H, 2); \
	Q2K_PART(H, 3)

// Q3K_PART: the 32 quants of elements 128H+32S.. : two bits from qs (bytes
// in Y8, shifted by 2S) plus 4 times bit 4H+S of hmask (Y10), moved to bit
// 2 by SH (a shift by N). Stored at 64+128H+32S(SP). Y0 = 0x03, Y1 = 0x04.
#define Q3K_PART(H, S, SH, N) \
	VPSRLW    $(2*(S)), Y8, Y9; \
	VPAND     Y0, Y9, Y9; \
	SH        $N, Y10, Y11; \
	VPAND     Y1, Y11, Y11; \
	VPOR      Y11, Y9, Y9; \
	VMOVDQU   Y9, 64+128*(H)+32*(S)(SP)

// QL_NIBBLES: the 32 four-bit quants at Q(SI) as floats: Y4 = elements
// 0..7, Y5 = 8..15 (low nibbles), Y6 = 16..23, Y7 = 24..31 (high).
// Y0 = 0x0f per dword.
#define QL_NIBBLES(Q) \
	VPMOVZXBD Q(SI), Y4; \
	VPMOVZXBD Q+8(SI), Y5; \
	VPSRLD    $4, Y4, Y6; \
	VPSRLD    $4, Y5, Y7; \
	VPAND     Y0, Y4, Y4; \
	VPAND     Y0, Y5, Y5

// QL_FIFTH ORs the fifth bits (bit j of the u32 at QH(SI) for element j)
// into Y4-Y7 as 16. Y1 = 0x10 per dword. Uses Y8, Y9.
#define QL_FIFTH(QH) \
	VPBROADCASTD QH(SI), Y8; \
	VPSRLVD   qrsh<>+0(SB), Y8, Y9; \
	VPSLLD    $4, Y9, Y9; \
	VPAND     Y1, Y9, Y9; \
	VPOR      Y9, Y4, Y4; \
	VPSRLVD   qrsh<>+32(SB), Y8, Y9; \
	VPSLLD    $4, Y9, Y9; \
	VPAND     Y1, Y9, Y9; \
	VPOR      Y9, Y5, Y5; \
	VPSRLVD   qrsh<>+64(SB), Y8, Y9; \
	VPSLLD    $4, Y9, Y9; \
	VPAND     Y1, Y9, Y9; \
	VPOR      Y9, Y6, Y6; \
	VPSRLVD   qrsh<>+96(SB), Y8, Y9; \
	VPSLLD    $4, Y9, Y9; \
	VPAND     Y1, Y9, Y9; \
	VPOR      Y9, Y7, Y7

// QL_DOT: Y4 = Σ q·x (lanes) over the block's 32 quants in Y4-Y7.
#define QL_DOT \
	VCVTDQ2PS Y4, Y4; \
	VCVTDQ2PS Y5, Y5; \
	VCVTDQ2PS Y6, Y6; \
	VCVTDQ2PS Y7, Y7; \
	VMULPS    (DX), Y4, Y4; \
	VMULPS    32(DX), Y5, Y5; \
	VFMADD231PS 64(DX), Y6, Y4; \
	VFMADD231PS 96(DX), Y7, Y5; \
	VADDPS    Y5, Y4, Y4

// QL_SCALE: TOT += d*Y4, with d the f16 at D(SI); then TERM (VFNMADD231PS
// for an offset, VFMADD231PS for a min) adds M times the block's prepared
// sums at (BX) (8 lanes whose total is offset*Σx, or Σx/8 for a min of f16
// M(SI); M = D for the offsets).
#define QL_SCALE(D, M, TERM) \
	VPBROADCASTW D(SI), X10; \
	VCVTPH2PS X10, Y10; \
	VFMADD231PS Y10, Y4, Y14; \
	VPBROADCASTW M(SI), X11; \
	VCVTPH2PS X11, Y11; \
	TERM      (BX), Y11, Y15

// QRD_MS8: 8 quants (bytes at B(SP)) times Y14 minus Y15, stored at OUT(DI).
#define QRD_MS8(B, OUT) \
	VPMOVZXBD B(SP), Y8; \
	VCVTDQ2PS Y8, Y8; \
	VMULPS    Y14, Y8, Y8; \
	VSUBPS    Y15, Y8, Y8; \
	VMOVUPS   Y8, OUT(DI)

#define Q5KD_GROUP(G) \
	VBROADCASTSS 4*(G)(SP), Y14; \
	VBROADCASTSS 32+4*(G)(SP), Y15; \
	QRD_MS8(64+32*(G), 128*(G)); \
	QRD_MS8(72+32*(G), 128*(G)+32); \
	QRD_MS8(80+32*(G), 128*(G)+64); \
	QRD_MS8(88+32*(G), 128*(G)+96)

#define Q2KD_GROUP(G) \
	VBROADCASTSS 4*(G)(SP), Y14; \
	VBROADCASTSS 320+4*(G)(SP), Y15; \
	QRD_MS8(64+16*(G), 64*(G)); \
	QRD_MS8(72+16*(G), 64*(G)+32)

// Q3KD_GROUP: group G's 16 quants minus 4 (Y3), times d*sc[G], stored.
#define Q3KD_8(B, OUT) \
	VPMOVZXBD B(SP), Y8; \
	VPSUBD    Y3, Y8, Y8; \
	VCVTDQ2PS Y8, Y8; \
	VMULPS    Y14, Y8, Y8; \
	VMOVUPS   Y8, OUT(DI)

#define Q3KD_GROUP(G) \
	VBROADCASTSS 4*(G)(SP), Y14; \
	Q3KD_8(64+16*(G), 64*(G)); \
	Q3KD_8(72+16*(G), 64*(G)+32)

// QLD_OFF: the block's quants in Y4-Y7 minus the offset in Y2, times d
// (f16 at D(SI)), stored (32 floats at (DI)).
#define QLD_OFF(D) \
	VPBROADCASTW D(SI), X10; \
	VCVTPH2PS X10, Y10; \
	VPSUBD    Y2, Y4, Y4; \
	VPSUBD    Y2, Y5, Y5; \
	VPSUBD    Y2, Y6, Y6; \
	VPSUBD    Y2, Y7, Y7; \
	VCVTDQ2PS Y4, Y4; \
	VCVTDQ2PS Y5, Y5; \
	VCVTDQ2PS Y6, Y6; \
	VCVTDQ2PS Y7, Y7; \
	VMULPS    Y10, Y4, Y4; \
	VMULPS    Y10, Y5, Y5; \
	VMULPS    Y10, Y6, Y6; \
	VMULPS    Y10, Y7, Y7; \
	VMOVUPS   Y4, (DI); \
	VMOVUPS   Y5, 32(DI); \
	VMOVUPS   Y6, 64(DI); \
	VMOVUPS   Y7, 96(DI)

// QLD_MIN: the block's quants in Y4-Y7 times d plus m (f16 at 0 and
// 2(SI)), stored.
#define QLD_MIN \
	VPBROADCASTW (SI), X10; \
	VCVTPH2PS X10, Y10; \
	VPBROADCASTW 2(SI), X11; \
	VCVTPH2PS X11, Y11; \
	VCVTDQ2PS Y4, Y4; \
	VCVTDQ2PS Y5, Y5; \
	VCVTDQ2PS Y6, Y6; \
	VCVTDQ2PS Y7, Y7; \
	VMULPS    Y10, Y4, Y4; \
	VMULPS    Y10, Y5, Y5; \
	VMULPS    Y10, Y6, Y6; \
	VMULPS    Y10, Y7, Y7; \
	VADDPS    Y11, Y4, Y4; \
	VADDPS    Y11, Y5, Y5; \
	VADDPS    Y11, Y6, Y6; \
	VADDPS    Y11, Y7, Y7; \
	VMOVUPS   Y4, (DI); \
	VMOVUPS   Y5, 32(DI); \
	VMOVUPS   Y6, 64(DI); \
	VMOVUPS   Y7, 96(DI)

// func q5kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)
// One Q5_K row: Σ_g d*sc[g] Σ q·x - Σ_g dmin*m[g] Σx[g] (xs: Σx per 32).
TEXT ·q5kMatVecAVX2(SB), NOSPLIT, $320-40
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   nb+32(FP), R11
	IMUL3Q $176, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qr0f<>(SB), Y0
	VPBROADCASTD qr10<>(SB), Y1
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

q5kBlock:
	QPFR(SI, 0)
	QPFR(SI, 64)
	QPFR(SI, 128)
	Q5K_SCALES
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
	VFNMADD231PS (BX), Y5, Y15
	VMOVDQU   16(SI), Y10
	Q5K_CHUNK(0, VPSLLW, 4, VPSLLW, 3)
	Q5K_CHUNK(1, VPSLLW, 2, VPSLLW, 1)
	Q5K_CHUNK(2, VPSLLW, 0, VPSRLW, 1)
	Q5K_CHUNK(3, VPSRLW, 2, VPSRLW, 3)
	QR_G32(0, Y14)
	QR_G32(1, Y15)
	QR_G32(2, Y14)
	QR_G32(3, Y15)
	QR_G32(4, Y14)
	QR_G32(5, Y15)
	QR_G32(6, Y14)
	QR_G32(7, Y15)
	ADDQ $176, SI
	ADDQ $1024, DX
	ADDQ $32, BX
	CMPQ SI, R11
	JB   q5kBlock

	VADDPS Y15, Y14, Y14
	MOVQ   y+0(FP), DI
	QR_HSUM(Y14, X14, (DI))
	VZEROUPPER
	RET

// func q2kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)
// One Q2_K row: Σ_g d*(sc[g]&15) Σ q·x - Σ_g dmin*(sc[g]>>4) Σx[g] (xs: Σx
// per 16).
TEXT ·q2kMatVecAVX2(SB), NOSPLIT, $320-40
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   nb+32(FP), R11
	IMUL3Q $84, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qr03<>(SB), Y0
	VPBROADCASTD qrd0f<>(SB), Y1
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

q2kBlock:
	QPFR(SI, 0)
	QPFR(SI, 64)
	VPBROADCASTW 80(SI), X6
	VCVTPH2PS X6, Y6
	VPBROADCASTW 82(SI), X7
	VCVTPH2PS X7, Y7
	VPMOVZXBD (SI), Y4
	VPMOVZXBD 8(SI), Y5
	VPSRLD    $4, Y4, Y2
	VPSRLD    $4, Y5, Y3
	VPAND     Y1, Y4, Y4
	VPAND     Y1, Y5, Y5
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS    Y6, Y4, Y4
	VMULPS    Y6, Y5, Y5
	VMOVUPS   Y4, (SP)
	VMOVUPS   Y5, 32(SP)
	VMULPS    Y7, Y2, Y2
	VMULPS    Y7, Y3, Y3
	VFNMADD231PS (BX), Y2, Y14
	VFNMADD231PS 32(BX), Y3, Y15
	Q2K_HALF(0)
	Q2K_HALF(1)
	QR_G16(0, Y14)
	QR_G16(1, Y15)
	QR_G16(2, Y14)
	QR_G16(3, Y15)
	QR_G16(4, Y14)
	QR_G16(5, Y15)
	QR_G16(6, Y14)
	QR_G16(7, Y15)
	QR_G16(8, Y14)
	QR_G16(9, Y15)
	QR_G16(10, Y14)
	QR_G16(11, Y15)
	QR_G16(12, Y14)
	QR_G16(13, Y15)
	QR_G16(14, Y14)
	QR_G16(15, Y15)
	ADDQ $84, SI
	ADDQ $1024, DX
	ADDQ $64, BX
	CMPQ SI, R11
	JB   q2kBlock

	VADDPS Y15, Y14, Y14
	MOVQ   y+0(FP), DI
	QR_HSUM(Y14, X14, (DI))
	VZEROUPPER
	RET

// func q3kMatVecAVX2(y *float32, w *byte, x, xs *float32, nb int)
// One Q3_K row: Σ_g d*sc[g] Σ q·x - Σ_g d*sc[g] 4Σx[g], q the unsigned
// three-bit quants (xs: 4Σx per 16).
TEXT ·q3kMatVecAVX2(SB), NOSPLIT, $320-40
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   nb+32(FP), R11
	IMUL3Q $110, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qr03<>(SB), Y0
	VPBROADCASTD qr04<>(SB), Y1
	VPBROADCASTD qrd20<>(SB), Y2
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

q3kBlock:
	QPFR(SI, 0)
	QPFR(SI, 64)
	// Sixteen 6-bit scales (ggml's aux decoding): low nibbles from bytes
	// 0..7, high pairs from bytes 8..11.
	MOVL  96(SI), AX
	MOVL  100(SI), CX
	MOVL  104(SI), R12
	MOVL  AX, R13
	ANDL  $0x0f0f0f0f, R13
	MOVL  R12, R8
	ANDL  $0x03030303, R8
	SHLL  $4, R8
	ORL   R8, R13            // scales 0..3
	MOVL  CX, R9
	ANDL  $0x0f0f0f0f, R9
	MOVL  R12, R8
	SHRL  $2, R8
	ANDL  $0x03030303, R8
	SHLL  $4, R8
	ORL   R8, R9             // scales 4..7
	SHLQ  $32, R9
	ORQ   R9, R13
	SHRL  $4, AX
	ANDL  $0x0f0f0f0f, AX
	MOVL  R12, R8
	SHRL  $4, R8
	ANDL  $0x03030303, R8
	SHLL  $4, R8
	ORL   R8, AX             // scales 8..11
	SHRL  $4, CX
	ANDL  $0x0f0f0f0f, CX
	SHRL  $6, R12
	ANDL  $0x03030303, R12
	SHLL  $4, R12
	ORL   R12, CX            // scales 12..15
	SHLQ  $32, CX
	ORQ   CX, AX
	VMOVQ     R13, X4
	VMOVQ     AX, X5
	VPMOVZXBD X4, Y4
	VPMOVZXBD X5, Y5
	VPSUBD    Y2, Y4, Y4
	VPSUBD    Y2, Y5, Y5
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VPBROADCASTW 108(SI), X6
	VCVTPH2PS X6, Y6
	VMULPS    Y6, Y4, Y4
	VMULPS    Y6, Y5, Y5
	VMOVUPS   Y4, (SP)
	VMOVUPS   Y5, 32(SP)
	VFNMADD231PS (BX), Y4, Y14
	VFNMADD231PS 32(BX), Y5, Y15

	VMOVDQU (SI), Y10
	VMOVDQU 32(SI), Y8
	Q3K_PART(0, 0, VPSLLW, 2)
	Q3K_PART(0, 1, VPSLLW, 1)
	Q3K_PART(0, 2, VPSRLW, 0)
	Q3K_PART(0, 3, VPSRLW, 1)
	VMOVDQU 64(SI), Y8
	Q3K_PART(1, 0, VPSRLW, 2)
	Q3K_PART(1, 1, VPSRLW, 3)
	Q3K_PART(1, 2, VPSRLW, 4)
	Q3K_PART(1, 3, VPSRLW, 5)
	QR_G16(0, Y14)
	QR_G16(1, Y15)
	QR_G16(2, Y14)
	QR_G16(3, Y15)
	QR_G16(4, Y14)
	QR_G16(5, Y15)
	QR_G16(6, Y14)
	QR_G16(7, Y15)
	QR_G16(8, Y14)
	QR_G16(9, Y15)
	QR_G16(10, Y14)
	QR_G16(11, Y15)
	QR_G16(12, Y14)
	QR_G16(13, Y15)
	QR_G16(14, Y14)
	QR_G16(15, Y15)
	ADDQ $110, SI
	ADDQ $1024, DX
	ADDQ $64, BX
	CMPQ SI, R11
	JB   q3kBlock

	VADDPS Y15, Y14, Y14
	MOVQ   y+0(FP), DI
	QR_HSUM(Y14, X14, (DI))
	VZEROUPPER
	RET

// func qlMatVecAVX2(y *float32, w *byte, x, xs *float32, nb, kind int)
// One row of nb 32-element blocks of a legacy type: kind 0 Q4_0, 1 Q4_1,
// 2 Q5_0, 3 Q5_1. xs holds 8 floats per block (see qlPrep).
TEXT ·qlMatVecAVX2(SB), NOSPLIT, $0-48
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), DX
	MOVQ   xs+24(FP), BX
	MOVQ   nb+32(FP), CX
	MOVQ   kind+40(FP), AX
	VPBROADCASTD qrd0f<>(SB), Y0
	VPBROADCASTD qrd10<>(SB), Y1
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15
	CMPQ   AX, $1
	JEQ    ql41
	CMPQ   AX, $2
	JEQ    ql50
	CMPQ   AX, $3
	JEQ    ql51

ql40:
	QPFR(SI, 0)
	QL_NIBBLES(2)
	QL_DOT
	QL_SCALE(0, 0, VFNMADD231PS)
	ADDQ $18, SI
	ADDQ $128, DX
	ADDQ $32, BX
	DECQ CX
	JNZ  ql40
	JMP  qlDone

ql41:
	QPFR(SI, 0)
	QL_NIBBLES(4)
	QL_DOT
	QL_SCALE(0, 2, VFMADD231PS)
	ADDQ $20, SI
	ADDQ $128, DX
	ADDQ $32, BX
	DECQ CX
	JNZ  ql41
	JMP  qlDone

ql50:
	QPFR(SI, 0)
	QL_NIBBLES(6)
	QL_FIFTH(2)
	QL_DOT
	QL_SCALE(0, 0, VFNMADD231PS)
	ADDQ $22, SI
	ADDQ $128, DX
	ADDQ $32, BX
	DECQ CX
	JNZ  ql50
	JMP  qlDone

ql51:
	QPFR(SI, 0)
	QL_NIBBLES(8)
	QL_FIFTH(4)
	QL_DOT
	QL_SCALE(0, 2, VFMADD231PS)
	ADDQ $24, SI
	ADDQ $128, DX
	ADDQ $32, BX
	DECQ CX
	JNZ  ql51

qlDone:
	VADDPS Y15, Y14, Y14
	MOVQ   y+0(FP), DI
	QR_HSUM(Y14, X14, (DI))
	VZEROUPPER
	RET

// Exact dequantization of the less common types for the batched products
// (bit-identical with quant.DequantizeRow): the same unpacking as the
// matvec kernels above, then each group's scale*q - min (or scale*(q -
// offset)) in float32 with the operations ggml uses, never fused.

// func q5kDequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q5kDequantAVX2(SB), NOSPLIT, $320-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $176, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qr0f<>(SB), Y0
	VPBROADCASTD qr10<>(SB), Y1

q5kdBlock:
	Q5K_SCALES
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
	VMOVDQU   16(SI), Y10
	Q5K_CHUNK(0, VPSLLW, 4, VPSLLW, 3)
	Q5K_CHUNK(1, VPSLLW, 2, VPSLLW, 1)
	Q5K_CHUNK(2, VPSLLW, 0, VPSRLW, 1)
	Q5K_CHUNK(3, VPSRLW, 2, VPSRLW, 3)
	Q5KD_GROUP(0)
	Q5KD_GROUP(1)
	Q5KD_GROUP(2)
	Q5KD_GROUP(3)
	Q5KD_GROUP(4)
	Q5KD_GROUP(5)
	Q5KD_GROUP(6)
	Q5KD_GROUP(7)
	ADDQ $176, SI
	ADDQ $1024, DI
	CMPQ SI, R11
	JB   q5kdBlock
	VZEROUPPER
	RET

// func q2kDequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q2kDequantAVX2(SB), NOSPLIT, $384-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $84, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qr03<>(SB), Y0
	VPBROADCASTD qrd0f<>(SB), Y1

q2kdBlock:
	VPBROADCASTW 80(SI), X6
	VCVTPH2PS X6, Y6
	VPBROADCASTW 82(SI), X7
	VCVTPH2PS X7, Y7
	VPMOVZXBD (SI), Y4
	VPMOVZXBD 8(SI), Y5
	VPSRLD    $4, Y4, Y2
	VPSRLD    $4, Y5, Y3
	VPAND     Y1, Y4, Y4
	VPAND     Y1, Y5, Y5
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS    Y6, Y4, Y4
	VMULPS    Y6, Y5, Y5
	VMULPS    Y7, Y2, Y2
	VMULPS    Y7, Y3, Y3
	VMOVUPS   Y4, (SP)
	VMOVUPS   Y5, 32(SP)
	VMOVUPS   Y2, 320(SP)
	VMOVUPS   Y3, 352(SP)
	Q2K_HALF(0)
	Q2K_HALF(1)
	Q2KD_GROUP(0)
	Q2KD_GROUP(1)
	Q2KD_GROUP(2)
	Q2KD_GROUP(3)
	Q2KD_GROUP(4)
	Q2KD_GROUP(5)
	Q2KD_GROUP(6)
	Q2KD_GROUP(7)
	Q2KD_GROUP(8)
	Q2KD_GROUP(9)
	Q2KD_GROUP(10)
	Q2KD_GROUP(11)
	Q2KD_GROUP(12)
	Q2KD_GROUP(13)
	Q2KD_GROUP(14)
	Q2KD_GROUP(15)
	ADDQ $84, SI
	ADDQ $1024, DI
	CMPQ SI, R11
	JB   q2kdBlock
	VZEROUPPER
	RET

// func q3kDequantAVX2(dst *float32, src *byte, nb int)
TEXT ·q3kDequantAVX2(SB), NOSPLIT, $320-24
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), R11
	IMUL3Q $110, R11, R11
	ADDQ   SI, R11
	VPBROADCASTD qr03<>(SB), Y0
	VPBROADCASTD qr04<>(SB), Y1
	VPBROADCASTD qrd20<>(SB), Y2
	VPBROADCASTD qrd04<>(SB), Y3

q3kdBlock:
	MOVL  96(SI), AX
	MOVL  100(SI), CX
	MOVL  104(SI), R12
	MOVL  AX, R13
	ANDL  $0x0f0f0f0f, R13
	MOVL  R12, R8
	ANDL  $0x03030303, R8
	SHLL  $4, R8
	ORL   R8, R13
	MOVL  CX, R9
	ANDL  $0x0f0f0f0f, R9
	MOVL  R12, R8
	SHRL  $2, R8
	ANDL  $0x03030303, R8
	SHLL  $4, R8
	ORL   R8, R9
	SHLQ  $32, R9
	ORQ   R9, R13
	SHRL  $4, AX
	ANDL  $0x0f0f0f0f, AX
	MOVL  R12, R8
	SHRL  $4, R8
	ANDL  $0x03030303, R8
	SHLL  $4, R8
	ORL   R8, AX
	SHRL  $4, CX
	ANDL  $0x0f0f0f0f, CX
	SHRL  $6, R12
	ANDL  $0x03030303, R12
	SHLL  $4, R12
	ORL   R12, CX
	SHLQ  $32, CX
	ORQ   CX, AX
	VMOVQ     R13, X4
	VMOVQ     AX, X5
	VPMOVZXBD X4, Y4
	VPMOVZXBD X5, Y5
	VPSUBD    Y2, Y4, Y4
	VPSUBD    Y2, Y5, Y5
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VPBROADCASTW 108(SI), X6
	VCVTPH2PS X6, Y6
	VMULPS    Y4, Y6, Y4
	VMULPS    Y5, Y6, Y5
	VMOVUPS   Y4, (SP)
	VMOVUPS   Y5, 32(SP)
	VMOVDQU (SI), Y10
	VMOVDQU 32(SI), Y8
	Q3K_PART(0, 0, VPSLLW, 2)
	Q3K_PART(0, 1, VPSLLW, 1)
	Q3K_PART(0, 2, VPSRLW, 0)
	Q3K_PART(0, 3, VPSRLW, 1)
	VMOVDQU 64(SI), Y8
	Q3K_PART(1, 0, VPSRLW, 2)
	Q3K_PART(1, 1, VPSRLW, 3)
	Q3K_PART(1, 2, VPSRLW, 4)
	Q3K_PART(1, 3, VPSRLW, 5)
	Q3KD_GROUP(0)
	Q3KD_GROUP(1)
	Q3KD_GROUP(2)
	Q3KD_GROUP(3)
	Q3KD_GROUP(4)
	Q3KD_GROUP(5)
	Q3KD_GROUP(6)
	Q3KD_GROUP(7)
	Q3KD_GROUP(8)
	Q3KD_GROUP(9)
	Q3KD_GROUP(10)
	Q3KD_GROUP(11)
	Q3KD_GROUP(12)
	Q3KD_GROUP(13)
	Q3KD_GROUP(14)
	Q3KD_GROUP(15)
	ADDQ $110, SI
	ADDQ $1024, DI
	CMPQ SI, R11
	JB   q3kdBlock
	VZEROUPPER
	RET

// func qlDequantAVX2(dst *float32, src *byte, nb, kind int)
// kind 0 Q4_0, 1 Q4_1, 2 Q5_0, 3 Q5_1.
TEXT ·qlDequantAVX2(SB), NOSPLIT, $0-32
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   nb+16(FP), CX
	MOVQ   kind+24(FP), AX
	VPBROADCASTD qrd0f<>(SB), Y0
	VPBROADCASTD qrd10<>(SB), Y1
	CMPQ   AX, $1
	JEQ    qld41
	CMPQ   AX, $2
	JEQ    qld50
	CMPQ   AX, $3
	JEQ    qld51
	VPBROADCASTD qrd08<>(SB), Y2

qld40:
	QL_NIBBLES(2)
	QLD_OFF(0)
	ADDQ $18, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  qld40
	JMP  qldDone

qld41:
	QL_NIBBLES(4)
	QLD_MIN
	ADDQ $20, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  qld41
	JMP  qldDone

qld50:
	VPBROADCASTD qrd10<>(SB), Y2

qld50Loop:
	QL_NIBBLES(6)
	QL_FIFTH(2)
	QLD_OFF(0)
	ADDQ $22, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  qld50Loop
	JMP  qldDone

qld51:
	QL_NIBBLES(8)
	QL_FIFTH(4)
	QLD_MIN
	ADDQ $24, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  qld51

qldDone:
	VZEROUPPER
	RET
