package plan

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestBlocksUses(t *testing.T) {
	cfg := shape(t, "llama-3-70b")
	const K, aal = 16, 15.22
	type uses struct{ head, norms, attn, sel, rest float64 }
	tests := []struct {
		mode Mode
		want uses
	}{
		{Dense, uses{1, 1, 1, 1, 1}},
		{Sparse, uses{1, 1, 1, 1, 0}},
		{Sirius, uses{K / aal, K / aal, K / aal, K / aal, 1 / aal}},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			bs := Blocks(cfg, UniformWeights(cfg, "bf16", 2), tc.mode, 0.5, K, aal)
			var total int64
			got := map[string]float64{}
			for _, b := range bs {
				total += b.Bytes
				got[b.Kind] = b.UsesPerToken
			}
			if want := 2 * cfg.Params(); total != want {
				t.Errorf("blocks hold %d bytes, model has %d", total, want)
			}
			if len(bs) != 3+3*cfg.Layers {
				t.Errorf("%d blocks, want %d", len(bs), 3+3*cfg.Layers)
			}
			w := tc.want
			for k, v := range map[string]float64{KindHead: w.head, KindNorms: w.norms, KindAttn: w.attn, KindFFNSel: w.sel, KindFFNRst: w.rest} {
				if math.Abs(got[k]-v) > 1e-12 {
					t.Errorf("%s uses %v per token, want %v", k, got[k], v)
				}
			}
			if e := got[KindEmbed]; math.Abs(e-1/float64(cfg.Vocab)) > 1e-15 {
				t.Errorf("embed uses %v per token, want 1/vocab", e)
			}
		})
	}
}

func TestBlocksTied(t *testing.T) {
	cfg := shape(t, "llama-2-7b")
	cfg.TiedEmbeddings = true
	bs := Blocks(cfg, UniformWeights(cfg, "f32", 4), Dense, 0.5, 16, 15)
	var total int64
	for _, b := range bs {
		if b.Kind == KindEmbed {
			t.Errorf("tied model has a separate embed block")
		}
		total += b.Bytes
	}
	if total != 4*cfg.Params() {
		t.Errorf("blocks hold %d bytes, model has %d", total, 4*cfg.Params())
	}
}

func TestResidencyOrder(t *testing.T) {
	bs := []Block{
		{Name: "head", Layer: -1, Kind: KindHead, Bytes: 10, UsesPerToken: 1, Required: true},
		{Name: "L0.rest", Layer: 0, Kind: KindFFNRst, Bytes: 30, UsesPerToken: 0.1},
		{Name: "L0.attn", Layer: 0, Kind: KindAttn, Bytes: 20, UsesPerToken: 1},
		{Name: "L1.attn", Layer: 1, Kind: KindAttn, Bytes: 20, UsesPerToken: 1},
		{Name: "L0.sel", Layer: 0, Kind: KindFFNSel, Bytes: 5, UsesPerToken: 1},
		{Name: "L1.unused", Layer: 1, Kind: KindFFNRst, Bytes: 1, UsesPerToken: 0},
		{Name: "embed", Layer: -1, Kind: KindEmbed, Bytes: 3, UsesPerToken: 0.001},
	}
	tests := []struct {
		budget, reserved int64
		want             string
	}{
		{10, 0, "head"},
		{30, 0, "head L0.attn"},
		{35, 0, "head L0.attn L0.sel"},
		// first fit: L1.attn does not fit, the smaller, equally used L0.sel does.
		{45, 5, "head L0.attn L0.sel embed"},
		{55, 0, "head L0.attn L1.attn L0.sel"},
		{58, 0, "head L0.attn L1.attn L0.sel embed"},
		{1000, 0, "head L0.rest L0.attn L1.attn L0.sel embed"},
	}
	for _, tc := range tests {
		res, err := Residency(bs, tc.budget, tc.reserved)
		if err != nil {
			t.Fatalf("budget %d: %v", tc.budget, err)
		}
		var got []string
		for i, r := range res {
			if r {
				got = append(got, bs[i].Name)
			}
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("budget %d reserved %d: resident %q, want %q", tc.budget, tc.reserved, g, tc.want)
		}
	}
	_, err := Residency(bs, 12, 5)
	var be *BudgetError
	if !errors.As(err, &be) || be.Need != 15 || be.Have != 12 {
		t.Fatalf("budget 12, reserved 5 + head 10: got %v", err)
	}
	if !strings.Contains(err.Error(), "too small") {
		t.Errorf("error %q", err)
	}
}

func TestModeText(t *testing.T) {
	for _, m := range Modes {
		b, _ := m.MarshalText()
		var back Mode
		if err := back.UnmarshalText(b); err != nil || back != m {
			t.Errorf("%s -> %q -> %v, %v", m, b, back, err)
		}
	}
	if _, err := ParseMode("turbo"); err == nil {
		t.Error("unknown mode accepted")
	}
}
