// Column softmax helpers for batched attention (attention.go): scores are
// laid out [t][lane], one lane per query row and head, so every vector op
// serves 8 rows at once. The exponential is a degree-6 polynomial on the
// reduced argument (|r| <= ln2/2) scaled by 2^n, about 1 ulp in float32;
// arguments below -87.3 (including -Inf, the causal mask) give exactly 0.

//go:build amd64 && !purego

#include "textflag.h"

DATA expConst<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expConst<>+4(SB)/4, $0x3f318000  // ln2 high: 0.693359375
DATA expConst<>+8(SB)/4, $0xb95e8083  // ln2 low: -2.12194440e-4
DATA expConst<>+12(SB)/4, $0x3950696f // 1.9875691500e-4
DATA expConst<>+16(SB)/4, $0x3ab743ce // 1.3981999507e-3
DATA expConst<>+20(SB)/4, $0x3c088908 // 8.3334519073e-3
DATA expConst<>+24(SB)/4, $0x3d2aa9c1 // 4.1665795894e-2
DATA expConst<>+28(SB)/4, $0x3e2aaaaa // 1.6666665459e-1
DATA expConst<>+32(SB)/4, $0x3f000000 // 0.5
DATA expConst<>+36(SB)/4, $0x3f800000 // 1
DATA expConst<>+40(SB)/4, $0x42b0c0a5 // 88.3762626647949: upper clamp
DATA expConst<>+44(SB)/4, $0xc2aeac50 // -87.3365447505531: below this, 0
DATA expConst<>+48(SB)/4, $0x0000007f // exponent bias
GLOBL expConst<>(SB), RODATA|NOPTR, $52

// func colMaxAVX2(m *float32, x *float32, rows, width int)
// m[c] = max(m[c], x[r*width+c]) for r < rows, c < width (width % 8 == 0).
TEXT ·colMaxAVX2(SB), NOSPLIT, $0-32
	MOVQ m+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ rows+16(FP), BX
	MOVQ width+24(FP), R8
	XORQ AX, AX
colMaxCol:
	CMPQ AX, R8
	JGE colMaxDone
	VMOVUPS (DI)(AX*4), Y0
	LEAQ (SI)(AX*4), DX
	MOVQ BX, CX
colMaxRow:
	TESTQ CX, CX
	JEQ colMaxStore
	VMAXPS (DX), Y0, Y0
	LEAQ (DX)(R8*4), DX
	DECQ CX
	JMP colMaxRow
colMaxStore:
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP colMaxCol
colMaxDone:
	VZEROUPPER
	RET

// func expSubAVX2(x *float32, m *float32, s *float32, rows, width int)
// x[r*width+c] = exp(x[r*width+c] - m[c]) and s[c] += that, for r < rows,
// c < width (width % 8 == 0).
TEXT ·expSubAVX2(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ m+8(FP), DI
	MOVQ s+16(FP), R9
	MOVQ rows+24(FP), BX
	MOVQ width+32(FP), R8
	VBROADCASTSS expConst<>+0(SB), Y15
	VBROADCASTSS expConst<>+4(SB), Y14
	VBROADCASTSS expConst<>+8(SB), Y13
	VBROADCASTSS expConst<>+40(SB), Y12
	VBROADCASTSS expConst<>+44(SB), Y11
	VPBROADCASTD expConst<>+48(SB), Y10
	XORQ AX, AX
expCol:
	CMPQ AX, R8
	JGE expDone
	VMOVUPS (DI)(AX*4), Y8
	VMOVUPS (R9)(AX*4), Y9
	LEAQ (SI)(AX*4), DX
	MOVQ BX, CX
expRow:
	TESTQ CX, CX
	JEQ expStore
	VMOVUPS (DX), Y0
	VSUBPS Y8, Y0, Y0
	VCMPPS $0x1d, Y11, Y0, Y7 // keep where x >= lower clamp (GE, ordered)
	VMINPS Y12, Y0, Y0
	VMAXPS Y11, Y0, Y0
	VMULPS Y15, Y0, Y1
	VROUNDPS $0, Y1, Y1       // n = round(x*log2e)
	VFNMADD231PS Y14, Y1, Y0  // r = x - n*ln2hi
	VFNMADD231PS Y13, Y1, Y0  // r -= n*ln2lo
	VBROADCASTSS expConst<>+12(SB), Y2
	VBROADCASTSS expConst<>+16(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+20(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+24(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+28(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+32(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VMULPS Y0, Y0, Y4
	VFMADD213PS Y0, Y4, Y2    // p = poly*r^2 + r
	VBROADCASTSS expConst<>+36(SB), Y3
	VADDPS Y3, Y2, Y2         // p += 1
	VCVTPS2DQ Y1, Y5
	VPADDD Y10, Y5, Y5
	VPSLLD $23, Y5, Y5        // 2^n
	VMULPS Y5, Y2, Y2
	VANDPS Y7, Y2, Y2
	VMOVUPS Y2, (DX)
	VADDPS Y2, Y9, Y9
	LEAQ (DX)(R8*4), DX
	DECQ CX
	JMP expRow
expStore:
	VMOVUPS Y9, (R9)(AX*4)
	ADDQ $8, AX
	JMP expCol
expDone:
	VZEROUPPER
	RET

// func expSubAVX512(x *float32, m *float32, s *float32, rows, width int)
// expSubAVX2 with 16 lanes (width % 16 == 0), constants in registers and
// the below-range lanes zeroed through a mask register.
TEXT ·expSubAVX512(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ m+8(FP), DI
	MOVQ s+16(FP), R9
	MOVQ rows+24(FP), BX
	MOVQ width+32(FP), R8
	VBROADCASTSS expConst<>+0(SB), Z31
	VBROADCASTSS expConst<>+4(SB), Z30
	VBROADCASTSS expConst<>+8(SB), Z29
	VBROADCASTSS expConst<>+12(SB), Z28
	VBROADCASTSS expConst<>+16(SB), Z27
	VBROADCASTSS expConst<>+20(SB), Z26
	VBROADCASTSS expConst<>+24(SB), Z25
	VBROADCASTSS expConst<>+28(SB), Z24
	VBROADCASTSS expConst<>+32(SB), Z23
	VBROADCASTSS expConst<>+36(SB), Z22
	VBROADCASTSS expConst<>+44(SB), Z21
	VPBROADCASTD expConst<>+48(SB), Z20
	XORQ AX, AX
exp512Col:
	CMPQ AX, R8
	JGE exp512Done
	VMOVUPS (DI)(AX*4), Z8
	VMOVUPS (R9)(AX*4), Z9
	LEAQ (SI)(AX*4), DX
	MOVQ BX, CX
exp512Row:
	TESTQ CX, CX
	JEQ exp512Store
	VMOVUPS (DX), Z0
	VSUBPS Z8, Z0, Z0
	VCMPPS $0x1d, Z21, Z0, K1 // lanes >= lower clamp (GE, ordered)
	VMAXPS Z21, Z0, Z0        // x <= 0 here: only the lower clamp matters
	VMULPS Z31, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1    // n = round(x*log2e)
	VFNMADD231PS Z30, Z1, Z0  // r = x - n*ln2hi
	VFNMADD231PS Z29, Z1, Z0  // r -= n*ln2lo
	VMOVAPS Z28, Z2
	VFMADD213PS Z27, Z0, Z2
	VFMADD213PS Z26, Z0, Z2
	VFMADD213PS Z25, Z0, Z2
	VFMADD213PS Z24, Z0, Z2
	VFMADD213PS Z23, Z0, Z2
	VMULPS Z0, Z0, Z4
	VFMADD213PS Z0, Z4, Z2    // p = poly*r^2 + r
	VADDPS Z22, Z2, Z2        // p += 1
	VCVTPS2DQ Z1, Z5
	VPADDD Z20, Z5, Z5
	VPSLLD $23, Z5, Z5        // 2^n
	VMULPS.Z Z5, Z2, K1, Z2
	VMOVUPS Z2, (DX)
	VADDPS Z2, Z9, Z9
	LEAQ (DX)(R8*4), DX
	DECQ CX
	JMP exp512Row
exp512Store:
	VMOVUPS Z9, (R9)(AX*4)
	ADDQ $16, AX
	JMP exp512Col
exp512Done:
	VZEROUPPER
	RET

// func siluMulAVX512(out, gate, up *float32, n int)
// out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < n (n % 16 == 0),
// the exponential as in expSubAVX512 (clamped on both sides: far below 0
// it is 0, far above it saturates near 2^127, where silu is 0 anyway).
TEXT ·siluMulAVX512(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS expConst<>+0(SB), Z31
	VBROADCASTSS expConst<>+4(SB), Z30
	VBROADCASTSS expConst<>+8(SB), Z29
	VBROADCASTSS expConst<>+12(SB), Z28
	VBROADCASTSS expConst<>+16(SB), Z27
	VBROADCASTSS expConst<>+20(SB), Z26
	VBROADCASTSS expConst<>+24(SB), Z25
	VBROADCASTSS expConst<>+28(SB), Z24
	VBROADCASTSS expConst<>+32(SB), Z23
	VBROADCASTSS expConst<>+36(SB), Z22
	VBROADCASTSS expConst<>+44(SB), Z21
	VPBROADCASTD expConst<>+48(SB), Z20
	VBROADCASTSS expConst<>+40(SB), Z19
	XORQ AX, AX
silu512Loop:
	CMPQ AX, CX
	JGE silu512Done
	VMOVUPS (SI)(AX*4), Z10   // g
	VXORPS Z0, Z0, Z0
	VSUBPS Z10, Z0, Z0        // x = -g
	VCMPPS $0x1d, Z21, Z0, K1 // lanes >= lower clamp (GE, ordered)
	VMAXPS Z21, Z0, Z0
	VMINPS Z19, Z0, Z0
	VMULPS Z31, Z0, Z1
	VRNDSCALEPS $0, Z1, Z1
	VFNMADD231PS Z30, Z1, Z0
	VFNMADD231PS Z29, Z1, Z0
	VMOVAPS Z28, Z2
	VFMADD213PS Z27, Z0, Z2
	VFMADD213PS Z26, Z0, Z2
	VFMADD213PS Z25, Z0, Z2
	VFMADD213PS Z24, Z0, Z2
	VFMADD213PS Z23, Z0, Z2
	VMULPS Z0, Z0, Z4
	VFMADD213PS Z0, Z4, Z2
	VADDPS Z22, Z2, Z2
	VCVTPS2DQ Z1, Z5
	VPADDD Z20, Z5, Z5
	VPSLLD $23, Z5, Z5
	VMULPS.Z Z5, Z2, K1, Z2   // exp(-g)
	VADDPS Z22, Z2, Z2        // 1 + exp(-g)
	VDIVPS Z2, Z10, Z3        // g / (1 + exp(-g))
	VMULPS (DX)(AX*4), Z3, Z3
	VMOVUPS Z3, (DI)(AX*4)
	ADDQ $16, AX
	JMP silu512Loop
silu512Done:
	VZEROUPPER
	RET

// func siluMulAVX2(out, gate, up *float32, n int)
// siluMulAVX512 with 8 lanes (n % 8 == 0).
TEXT ·siluMulAVX2(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS expConst<>+0(SB), Y15
	VBROADCASTSS expConst<>+4(SB), Y14
	VBROADCASTSS expConst<>+8(SB), Y13
	VBROADCASTSS expConst<>+40(SB), Y12
	VBROADCASTSS expConst<>+44(SB), Y11
	VPBROADCASTD expConst<>+48(SB), Y10
	VBROADCASTSS expConst<>+36(SB), Y9
	XORQ AX, AX
silu256Loop:
	CMPQ AX, CX
	JGE silu256Done
	VMOVUPS (SI)(AX*4), Y8    // g
	VXORPS Y0, Y0, Y0
	VSUBPS Y8, Y0, Y0         // x = -g
	VCMPPS $0x1d, Y11, Y0, Y7
	VMAXPS Y11, Y0, Y0
	VMINPS Y12, Y0, Y0
	VMULPS Y15, Y0, Y1
	VROUNDPS $0, Y1, Y1
	VFNMADD231PS Y14, Y1, Y0
	VFNMADD231PS Y13, Y1, Y0
	VBROADCASTSS expConst<>+12(SB), Y2
	VBROADCASTSS expConst<>+16(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+20(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+24(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+28(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VBROADCASTSS expConst<>+32(SB), Y3
	VFMADD213PS Y3, Y0, Y2
	VMULPS Y0, Y0, Y4
	VFMADD213PS Y0, Y4, Y2
	VADDPS Y9, Y2, Y2
	VCVTPS2DQ Y1, Y5
	VPADDD Y10, Y5, Y5
	VPSLLD $23, Y5, Y5
	VMULPS Y5, Y2, Y2
	VANDPS Y7, Y2, Y2         // exp(-g)
	VADDPS Y9, Y2, Y2
	VDIVPS Y2, Y8, Y3
	VMULPS (DX)(AX*4), Y3, Y3
	VMOVUPS Y3, (DI)(AX*4)
	ADDQ $8, AX
	JMP silu256Loop
silu256Done:
	VZEROUPPER
	RET
