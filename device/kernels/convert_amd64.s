//go:build amd64 && !purego

#include "textflag.h"

// BCAST32 fills every dword of Y with the constant c.
#define BCAST32(c, X, Y) MOVL c, AX; VMOVD AX, X; VPBROADCASTD X, Y

// ROUNDBF16(B, T, U, M, D) leaves in D the bf16 bits (in the low half of each
// dword) of the floats in B, rounded to nearest even; NaNs are quieted.
// Uses Y10=0x7fff, Y11=1, Y12=0x7fffffff, Y13=0x7f800000, Y14=0x40.
#define ROUNDBF16(B, T, U, M, D) \
	VPSRLD $16, B, T;          \
	VPAND Y11, T, D;           \
	VPADDD Y10, D, D;          \
	VPADDD B, D, D;            \
	VPSRLD $16, D, D;          \
	VPOR Y14, T, U;            \
	VPAND Y12, B, M;           \
	VPCMPGTD Y13, M, M;        \
	VPBLENDVB M, U, D, D

// func f32ToBF16AVX2(dst *uint16, src *float32, n int)
// n is a multiple of 16.
TEXT ·f32ToBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	BCAST32($0x7fff, X10, Y10)
	BCAST32($1, X11, Y11)
	BCAST32($0x7fffffff, X12, Y12)
	BCAST32($0x7f800000, X13, Y13)
	BCAST32($0x40, X14, Y14)

nbf16loop:
	CMPQ CX, $16
	JLT  nbf16done
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	ROUNDBF16(Y0, Y2, Y3, Y4, Y5)
	ROUNDBF16(Y1, Y2, Y3, Y4, Y6)
	// Pack 16 dwords to words (values fit, so unsigned saturation is a
	// no-op), then undo the per-128-bit-lane interleave of VPACKUSDW.
	VPACKUSDW Y6, Y5, Y5
	VPERMQ    $0xD8, Y5, Y5
	VMOVDQU   Y5, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	SUBQ      $16, CX
	JMP       nbf16loop

nbf16done:
	VZEROUPPER
	RET

// func f32ToF16AVX2(dst *uint16, src *float32, n int)
// n is a multiple of 8. Rounding mode 0 is round to nearest even.
TEXT ·f32ToF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

nf16loop:
	CMPQ      CX, $8
	JLT       nf16done
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	SUBQ      $8, CX
	JMP       nf16loop

nf16done:
	VZEROUPPER
	RET

// func readOrAVX2(p *uint64, q int) uint64
// ORs together the four streams p[0:q], p[q:2q], p[2q:3q], p[3q:4q] (q a
// multiple of 8 words), 64 bytes from each per step: a read of the buffer at
// full load-port width with nothing else to do, i.e. the memory-read
// ceiling. Four interleaved streams, like the matvec kernels, so the ceiling
// gets the same memory-level parallelism they do.
TEXT ·readOrAVX2(SB), NOSPLIT, $0-24
	MOVQ  p+0(FP), SI
	MOVQ  q+8(FP), CX
	MOVQ  CX, R10
	SHLQ  $3, R10
	LEAQ  (R10)(R10*2), R11
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

rorloop:
	CMPQ CX, $8
	JLT  rordone
	VPOR (SI), Y0, Y0
	VPOR 32(SI), Y1, Y1
	VPOR (SI)(R10*1), Y2, Y2
	VPOR 32(SI)(R10*1), Y3, Y3
	VPOR (SI)(R10*2), Y0, Y0
	VPOR 32(SI)(R10*2), Y1, Y1
	VPOR (SI)(R11*1), Y2, Y2
	VPOR 32(SI)(R11*1), Y3, Y3
	ADDQ $64, SI
	SUBQ $8, CX
	JMP  rorloop

rordone:
	VPOR         Y1, Y0, Y0
	VPOR         Y3, Y2, Y2
	VPOR         Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPOR         X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPOR         X1, X0, X0
	VMOVQ        X0, AX
	MOVQ         AX, ret+16(FP)
	VZEROUPPER
	RET
