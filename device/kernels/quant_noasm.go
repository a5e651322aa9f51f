//go:build !amd64 || purego

package kernels

// Without assembly the quantized kernels are their plain-Go versions.

const qMaxLevel = 0

func qkernelASM(*qkern, int) {}

func qTileRows() int { return qTileMax }

func qTile(acc *[qTileMax * qTileCols]float32, w *[qTileMax][]float32, x *[qTileCols][]float32, in int) {
	qTileGeneric(acc, w, x, qTileMax, in)
}

// qRead reads p (the memory-read ceiling of the quantized benchmarks).
func qRead(p []byte) uint64 { return qReadGeneric(p) }

// qMultiRowMin is unused without assembly (see quant_amd64.go).
var qMultiRowMin = 0
