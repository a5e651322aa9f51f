//go:build ignore

// gengemm writes gemm_amd64.s and gemm_tab_amd64.go: the register-tiled
// micro-kernels of the batched products (see gemm.go) and the table the Go
// side picks them from, and the AVX-512 matvec kernels. Run it with
// `go generate` in this directory.
//
// Every kernel computes one tile of a transposed output,
//
//	c[o*ldc + r] (= or +=) Σ_{k<kc} x[k*ldx + r] * w(o, k)
//
// for rows r < lanes*mrv and outputs o < nr. The rows are the vector lanes
// (mrv vectors of lanes floats, loaded from the packed activations x), each
// weight is broadcast, and the mrv*nr sums stay in registers for the whole
// k loop. w(o, k) is panel[o*kcp + k] in the row layout ('R', a panel of
// weight rows: MatMul, attention scores; kcp is a constant of the kernel)
// and panel[k*ldw + o] in the k layout ('K', a strip of weight columns:
// MatMulT, attention values).
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"strings"
)

type variant struct {
	isa    string // "Z": AVX-512 (32 registers, embedded broadcast); "Y": AVX2+FMA (16 registers)
	lanes  int    // 16 (zmm), 8 (ymm) or 4 (xmm)
	mrv    int    // row vectors per tile
	nr     int    // outputs per tile
	layout byte   // 'R' or 'K'
	kc     int    // k block
}

// kcp is the row stride of a row-layout panel: kc plus one cache line, so
// that the nr rows of a panel do not all map to the same L1 sets.
func (v variant) kcp() int { return v.kc + 16 }

func (v variant) name() string {
	return fmt.Sprintf("gemm%c%s%dx%dx%d", v.layout, v.isa, v.lanes, v.mrv, v.nr)
}

// kcFor picks the k block of a row-layout panel, whose row stride kcp is
// built into the kernel. 128 (a 16 KiB panel of 28 rows, in L1 next to the
// activations' 8 KiB) measured best for the wide tiles that cover a batch in
// one row block: with the next panel prefetched while this one computes,
// longer bursts per weight row (kc = 1024) gained nothing (8B FFN shape, 16
// rows, per CPU second: 0.67 of the FMA peak at 128, 0.63 at 1024). The
// 6-wide tiles, whose panels every row block of a large batch reuses, take
// 256.
func kcFor(nr int) int {
	if nr == 6 {
		return 256
	}
	return 128
}

func variants() []variant {
	var vs []variant
	for _, layout := range []byte{'R', 'K'} {
		add := func(isa string, lanes, mrv, nr int) {
			vs = append(vs, variant{isa, lanes, mrv, nr, layout, kcFor(nr)})
		}
		// AVX-512: 64-row tiles for big batches (with 48/32/16-row tiles of
		// the same width for the rest), and one tile as wide as the
		// registers allow for each batch of 48, 32, 16, 8 and 4 rows.
		for mrv := 1; mrv <= 4; mrv++ {
			add("Z", 16, mrv, 6)
		}
		add("Z", 16, 3, 8)
		add("Z", 16, 2, 14)
		add("Z", 16, 1, 28)
		add("Z", 8, 1, 28)
		add("Z", 4, 1, 28)
		// Narrow tiles for products with at most 8 outputs (attention
		// values at small head sizes), one row vector per tile.
		add("Z", 16, 1, 8)
		add("Z", 8, 1, 8)
		add("Z", 4, 1, 8)
		// AVX2: 16-row tiles (8-row for the rest), and 8 and 4 rows.
		add("Y", 8, 2, 6)
		add("Y", 8, 1, 6)
		add("Y", 8, 1, 12)
		add("Y", 4, 1, 12)
		add("Y", 4, 1, 6)
	}
	return vs
}

type gen struct{ b bytes.Buffer }

func (g *gen) p(format string, args ...any) { fmt.Fprintf(&g.b, "\t"+format+"\n", args...) }
func (g *gen) label(l string)               { fmt.Fprintf(&g.b, "%s:\n", l) }

func reg(v variant, i int) string {
	switch v.lanes {
	case 16:
		return fmt.Sprintf("Z%d", i)
	case 8:
		return fmt.Sprintf("Y%d", i)
	}
	return fmt.Sprintf("X%d", i)
}

// Registers: x vectors 0..mrv-1, broadcasts next (two, alternating, when a
// broadcast feeds several rows), then accumulators acc(v, o).
func (v variant) nbcast() int {
	if v.mrv == 1 && v.isa == "Z" {
		return 0 // embedded broadcast: the FMA loads it
	}
	return 2
}

func (v variant) acc(i, o int) int { return v.mrv + v.nbcast() + o*v.mrv + i }

func (v variant) check() {
	if n := v.mrv + v.nbcast() + v.mrv*v.nr; (v.isa == "Z" && n > 32) || (v.isa == "Y" && n > 16) {
		panic(fmt.Sprintf("%s needs %d registers", v.name(), n))
	}
}

// waddr is the operand that loads w(o, u), u steps on from the panel pointer.
// In the k layout the panel's k stride is a register (R12, R13 = 3*R12), as
// the activations' is (R9, R11 = 3*R9).
func (v variant) waddr(o, u int) string {
	if v.layout == 'R' {
		return fmt.Sprintf("%d(DX)", (o*v.kcp()+u)*4)
	}
	return fmt.Sprintf("%d%s", o*4, wbase[u])
}

var (
	xbase = []string{"(SI)", "(SI)(R9*1)", "(SI)(R9*2)", "(SI)(R11*1)"}
	wbase = []string{"(DX)", "(DX)(R12*1)", "(DX)(R12*2)", "(DX)(R13*1)"}
)

// advance moves the panel and activation pointers on by k steps (1 or 4).
func (g *gen) advance(v variant, k int) {
	if k == 4 {
		g.p("LEAQ (SI)(R9*4), SI")
	} else {
		g.p("ADDQ R9, SI")
	}
	switch {
	case v.layout == 'R':
		g.p("ADDQ $%d, DX", 4*k)
	case k == 4:
		g.p("LEAQ (DX)(R12*4), DX")
	default:
		g.p("ADDQ R12, DX")
	}
}

// step emits one k step (u-th of an unrolled group).
func (g *gen) step(v variant, u int) {
	for i := range v.mrv {
		g.p("VMOVUPS %d%s, %s", i*v.lanes*4, xbase[u], reg(v, i))
	}
	nb := 0
	for o := range v.nr {
		a := v.waddr(o, u)
		if v.nbcast() == 0 {
			g.p("VFMADD231PS.BCST %s, %s, %s", a, reg(v, 0), reg(v, v.acc(0, o)))
			continue
		}
		b := reg(v, v.mrv+nb)
		nb ^= 1
		g.p("VBROADCASTSS %s, %s", a, b)
		for i := range v.mrv {
			g.p("VFMADD231PS %s, %s, %s", b, reg(v, i), reg(v, v.acc(i, o)))
		}
	}
}

// pfSlots is how many prefetches an unrolled iteration (4 k steps) may
// issue: twice what f32 weights need (one 64-byte line per 16 weights
// consumed), as short segments straddle lines.
func (v variant) pfSlots() int { return (v.nr + 1) / 2 }

// prefetch emits one prefetch slot: while prefetches remain (R10), touch
// line BX of the segment at AX, moving to the next segment (AX += R8) when
// BX reaches the segment length (DI).
func (g *gen) prefetch(v variant, id int) {
	skip := fmt.Sprintf("%spf%d", v.name(), id)
	g.p("TESTQ R10, R10")
	g.p("JEQ %s", skip)
	g.p("PREFETCHT1 (AX)(BX*1)")
	g.p("DECQ R10")
	g.p("ADDQ $64, BX")
	g.p("CMPQ BX, DI")
	g.p("JLT %s", skip)
	g.p("XORQ BX, BX")
	g.p("ADDQ R8, AX")
	g.label(skip)
}

func (g *gen) kernel(v variant) {
	v.check()
	n := v.name()
	fmt.Fprintf(&g.b, "\n// func %s%s\n", n, kernelSig)
	fmt.Fprintf(&g.b, "TEXT ·%s(SB), NOSPLIT, $0-96\n", n)
	g.p("MOVQ x+16(FP), SI")
	g.p("MOVQ ldx+24(FP), R9")
	g.p("MOVQ w+32(FP), DX")
	g.p("MOVQ ldw+40(FP), R12")
	g.p("MOVQ kc+48(FP), CX")
	g.p("MOVQ pf+64(FP), AX")
	g.p("MOVQ pfld+72(FP), R8")
	g.p("MOVQ pfseg+80(FP), DI")
	g.p("MOVQ pfn+88(FP), R10")
	g.p("XORQ BX, BX")
	g.p("SHLQ $2, R9")
	g.p("LEAQ (R9)(R9*2), R11")
	g.p("SHLQ $2, R12")
	g.p("LEAQ (R12)(R12*2), R13")
	for o := range v.nr {
		for i := range v.mrv {
			r := reg(v, v.acc(i, o))
			g.p("VXORPS %s, %s, %s", r, r, r)
		}
	}
	g.label(n + "loop4")
	g.p("CMPQ CX, $4")
	g.p("JLT %sloop1", n)
	slots, id := v.pfSlots(), 0
	for u := range 4 {
		g.step(v, u)
		for range (slots + 3) / 4 {
			if id < slots {
				g.prefetch(v, id)
				id++
			}
		}
	}
	g.advance(v, 4)
	g.p("SUBQ $4, CX")
	g.p("JMP %sloop4", n)
	g.label(n + "loop1")
	g.p("TESTQ CX, CX")
	g.p("JEQ %sstore", n)
	g.step(v, 0)
	g.advance(v, 1)
	g.p("DECQ CX")
	g.p("JMP %sloop1", n)
	g.label(n + "store")
	g.p("MOVQ c+0(FP), DI")
	g.p("MOVQ ldc+8(FP), R8")
	g.p("SHLQ $2, R8")
	g.p("MOVQ acc+56(FP), R10")
	g.p("TESTQ R10, R10")
	g.p("JEQ %sset", n)
	for o := range v.nr {
		for i := range v.mrv {
			r := reg(v, v.acc(i, o))
			g.p("VADDPS %d(DI), %s, %s", i*v.lanes*4, r, r)
			g.p("VMOVUPS %s, %d(DI)", r, i*v.lanes*4)
		}
		g.p("ADDQ R8, DI")
	}
	g.p("VZEROUPPER")
	g.p("RET")
	g.label(n + "set")
	for o := range v.nr {
		for i := range v.mrv {
			g.p("VMOVUPS %s, %d(DI)", reg(v, v.acc(i, o)), i*v.lanes*4)
		}
		g.p("ADDQ R8, DI")
	}
	g.p("VZEROUPPER")
	g.p("RET")
}

// matvec writes dot4x1{F32,F16,BF16}AVX512: four weight rows (wstride
// elements apart) dotted with one activation row, the matvec's inner loop,
// converting f16/bf16 weights in registers. n is a multiple of 16; the sums
// of 32 elements per step go to eight accumulators, reduced at the end into
// acc[0..3].
func (g *gen) matvec(kind string) {
	n := "dot4x1" + kind + "AVX512"
	es := 2
	wt := "uint16"
	if kind == "F32" {
		es, wt = 4, "float32"
	}
	fmt.Fprintf(&g.b, "\n// func %s(acc *[4]float32, w *%s, wstride int, x *float32, n int)\n", n, wt)
	fmt.Fprintf(&g.b, "TEXT ·%s(SB), NOSPLIT, $0-40\n", n)
	g.p("MOVQ acc+0(FP), AX")
	g.p("MOVQ w+8(FP), SI")
	g.p("MOVQ wstride+16(FP), R10")
	g.p("MOVQ x+24(FP), DI")
	g.p("MOVQ n+32(FP), CX")
	if es == 4 {
		g.p("SHLQ $2, R10")
	} else {
		g.p("SHLQ $1, R10")
	}
	g.p("LEAQ (R10)(R10*2), R11")
	for i := range 8 {
		g.p("VXORPS Z%d, Z%d, Z%d", i, i, i)
	}
	rows := []string{"(SI)", "(SI)(R10*1)", "(SI)(R10*2)", "(SI)(R11*1)"}
	load := func(off int, row string, dst string) {
		switch kind {
		case "F32":
			g.p("VMOVUPS %d%s, %s", off, row, dst)
		case "F16":
			g.p("VCVTPH2PS %d%s, %s", off, row, dst)
		default:
			g.p("VPMOVZXWD %d%s, %s", off, row, dst)
			g.p("VPSLLD $16, %s, %s", dst, dst)
		}
	}
	g.label(n + "loop32")
	g.p("CMPQ CX, $32")
	g.p("JLT %sloop16", n)
	g.p("VMOVUPS (DI), Z8")
	g.p("VMOVUPS 64(DI), Z9")
	for r, row := range rows {
		load(0, row, "Z10")
		load(16*es, row, "Z11")
		g.p("VFMADD231PS Z10, Z8, Z%d", r)
		g.p("VFMADD231PS Z11, Z9, Z%d", r+4)
	}
	g.p("ADDQ $%d, SI", 32*es)
	g.p("ADDQ $128, DI")
	g.p("SUBQ $32, CX")
	g.p("JMP %sloop32", n)
	g.label(n + "loop16")
	g.p("CMPQ CX, $16")
	g.p("JLT %sdone", n)
	g.p("VMOVUPS (DI), Z8")
	for r, row := range rows {
		load(0, row, "Z10")
		g.p("VFMADD231PS Z10, Z8, Z%d", r)
	}
	g.p("ADDQ $%d, SI", 16*es)
	g.p("ADDQ $64, DI")
	g.p("SUBQ $16, CX")
	g.p("JMP %sloop16", n)
	g.label(n + "done")
	// Z0..Z3 += Z4..Z7, then fold each to 8, 4 lanes and finish as the
	// AVX2 kernels do.
	for r := range 4 {
		g.p("VADDPS Z%d, Z%d, Z%d", r+4, r, r)
		g.p("VEXTRACTF64X4 $1, Z%d, Y%d", r, r+4)
		g.p("VADDPS Y%d, Y%d, Y%d", r+4, r, r)
	}
	g.p("VHADDPS Y1, Y0, Y0")
	g.p("VHADDPS Y3, Y2, Y2")
	g.p("VHADDPS Y2, Y0, Y0")
	g.p("VEXTRACTF128 $1, Y0, X1")
	g.p("VADDPS X1, X0, X0")
	g.p("VMOVUPS X0, (AX)")
	g.p("VZEROUPPER")
	g.p("RET")
}

const kernelSig = "(c *float32, ldc int, x *float32, ldx int, w *float32, ldw, kc, acc int, pf unsafe.Pointer, pfld, pfseg, pfn int)"

func main() {
	vs := variants()
	var s gen
	s.b.WriteString(`// Code generated by gengemm.go; DO NOT EDIT.

// Register-tiled micro-kernels of the batched products: see gengemm.go for
// what each computes and gemm.go for how they are driven.

//go:build amd64 && !purego

#include "textflag.h"
`)
	for _, v := range vs {
		s.kernel(v)
	}
	for _, k := range []string{"F32", "F16", "BF16"} {
		s.matvec(k)
	}
	if err := os.WriteFile("gemm_amd64.s", s.b.Bytes(), 0o644); err != nil {
		panic(err)
	}

	var t strings.Builder
	t.WriteString(`// Code generated by gengemm.go; DO NOT EDIT.

//go:build amd64 && !purego

package kernels

import "unsafe"
`)
	for _, v := range vs {
		fmt.Fprintf(&t, "\n//go:noescape\nfunc %s%s\n", v.name(), kernelSig)
	}
	for _, k := range []string{"F32", "F16", "BF16"} {
		wt := "uint16"
		if k == "F32" {
			wt = "float32"
		}
		fmt.Fprintf(&t, "\n//go:noescape\nfunc dot4x1%sAVX512(acc *[4]float32, w *%s, wstride int, x *float32, n int)\n", k, wt)
	}
	for _, isa := range []string{"Z", "Y"} {
		fmt.Fprintf(&t, "\nvar gemmKernels%s = []gemmKernel{\n", isa)
		for _, v := range vs {
			if v.isa != isa {
				continue
			}
			fmt.Fprintf(&t, "\t{layout: '%c', lanes: %d, mrv: %d, nr: %d, kc: %d, kcp: %d, fn: %s},\n",
				v.layout, v.lanes, v.mrv, v.nr, v.kc, v.kcp(), v.name())
		}
		t.WriteString("}\n")
	}
	src, err := format.Source([]byte(t.String()))
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile("gemm_tab_amd64.go", src, 0o644); err != nil {
		panic(err)
	}
}
