// Panel packing for the batched products (gemm.go): rows of a strided
// matrix copied, and widened to float32, into a strided panel. Each row goes
// 32 elements at a time, then 8, then one.

//go:build amd64 && !purego

#include "textflag.h"

// func packRowsF32AVX2(dst *float32, ldd int, src *float32, lds int, rows, cols int)
TEXT ·packRowsF32AVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	MOVQ rows+32(FP), BX
	MOVQ cols+40(FP), R10
	SHLQ $2, R8
	SHLQ $2, R9
packF32row:
	TESTQ BX, BX
	JEQ packF32done
	XORQ AX, AX
	LEAQ (SI)(R9*2), R11
packF32loop32:
	LEAQ 32(AX), CX
	CMPQ CX, R10
	JGT packF32loop8
	PREFETCHT0 (R11)(AX*4)
	PREFETCHT0 64(R11)(AX*4)
	VMOVUPS (SI)(AX*4), Y0
	VMOVUPS 32(SI)(AX*4), Y1
	VMOVUPS 64(SI)(AX*4), Y2
	VMOVUPS 96(SI)(AX*4), Y3
	VMOVUPS Y0, (DI)(AX*4)
	VMOVUPS Y1, 32(DI)(AX*4)
	VMOVUPS Y2, 64(DI)(AX*4)
	VMOVUPS Y3, 96(DI)(AX*4)
	MOVQ CX, AX
	JMP packF32loop32
packF32loop8:
	LEAQ 8(AX), CX
	CMPQ CX, R10
	JGT packF32loop1
	VMOVUPS (SI)(AX*4), Y0
	VMOVUPS Y0, (DI)(AX*4)
	MOVQ CX, AX
	JMP packF32loop8
packF32loop1:
	CMPQ AX, R10
	JGE packF32next
	VMOVSS (SI)(AX*4), X0
	VMOVSS X0, (DI)(AX*4)
	INCQ AX
	JMP packF32loop1
packF32next:
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ BX
	JMP packF32row
packF32done:
	VZEROUPPER
	RET

// func packRowsF16AVX2(dst *float32, ldd int, src *uint16, lds int, rows, cols int)
TEXT ·packRowsF16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	MOVQ rows+32(FP), BX
	MOVQ cols+40(FP), R10
	SHLQ $2, R8
	SHLQ $1, R9
packF16row:
	TESTQ BX, BX
	JEQ packF16done
	XORQ AX, AX
packF16loop32:
	LEAQ 32(AX), CX
	CMPQ CX, R10
	JGT packF16loop8
	VCVTPH2PS (SI)(AX*2), Y0
	VCVTPH2PS 16(SI)(AX*2), Y1
	VCVTPH2PS 32(SI)(AX*2), Y2
	VCVTPH2PS 48(SI)(AX*2), Y3
	VMOVUPS Y0, (DI)(AX*4)
	VMOVUPS Y1, 32(DI)(AX*4)
	VMOVUPS Y2, 64(DI)(AX*4)
	VMOVUPS Y3, 96(DI)(AX*4)
	MOVQ CX, AX
	JMP packF16loop32
packF16loop8:
	LEAQ 8(AX), CX
	CMPQ CX, R10
	JGT packF16loop1
	VCVTPH2PS (SI)(AX*2), Y0
	VMOVUPS Y0, (DI)(AX*4)
	MOVQ CX, AX
	JMP packF16loop8
packF16loop1:
	CMPQ AX, R10
	JGE packF16next
	MOVWLZX (SI)(AX*2), CX
	MOVQ CX, X0
	VCVTPH2PS X0, X0
	VMOVSS X0, (DI)(AX*4)
	INCQ AX
	JMP packF16loop1
packF16next:
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ BX
	JMP packF16row
packF16done:
	VZEROUPPER
	RET

// func packRowsBF16AVX2(dst *float32, ldd int, src *uint16, lds int, rows, cols int)
TEXT ·packRowsBF16AVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	MOVQ rows+32(FP), BX
	MOVQ cols+40(FP), R10
	SHLQ $2, R8
	SHLQ $1, R9
packBF16row:
	TESTQ BX, BX
	JEQ packBF16done
	XORQ AX, AX
packBF16loop32:
	LEAQ 32(AX), CX
	CMPQ CX, R10
	JGT packBF16loop8
	VPMOVZXWD (SI)(AX*2), Y0
	VPMOVZXWD 16(SI)(AX*2), Y1
	VPMOVZXWD 32(SI)(AX*2), Y2
	VPMOVZXWD 48(SI)(AX*2), Y3
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	VPSLLD $16, Y2, Y2
	VPSLLD $16, Y3, Y3
	VMOVUPS Y0, (DI)(AX*4)
	VMOVUPS Y1, 32(DI)(AX*4)
	VMOVUPS Y2, 64(DI)(AX*4)
	VMOVUPS Y3, 96(DI)(AX*4)
	MOVQ CX, AX
	JMP packBF16loop32
packBF16loop8:
	LEAQ 8(AX), CX
	CMPQ CX, R10
	JGT packBF16loop1
	VPMOVZXWD (SI)(AX*2), Y0
	VPSLLD $16, Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	MOVQ CX, AX
	JMP packBF16loop8
packBF16loop1:
	CMPQ AX, R10
	JGE packBF16next
	MOVWLZX (SI)(AX*2), CX
	SHLL $16, CX
	MOVL CX, (DI)(AX*4)
	INCQ AX
	JMP packBF16loop1
packBF16next:
	ADDQ R8, DI
	ADDQ R9, SI
	DECQ BX
	JMP packBF16row
packBF16done:
	VZEROUPPER
	RET
