package engine

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"offload/corrector"
	_ "offload/cuda" // registers "cuda", for the emulated driver
	"offload/device"
	"offload/device/devicetest"
	"offload/device/host"
	"offload/internal/emu"
	"offload/internal/fixtures"
	"offload/model"
)

// faultCase is one generation whose every device call is failed in turn.
type faultCase struct {
	name   string
	mode   corrector.Mode
	stream bool
}

// faultGen is the generation each fault run makes.
type faultGen struct {
	prompt, tokens, window int
}

var faultCases = []faultCase{
	{"dense-resident", corrector.Dense, false},
	{"sirius-streamed", corrector.Sirius, true},
}

// TestFaultInjection runs one dense and one Sirius generation of
// stories260K on a devicetest.Faulty device, failing each Alloc, copy,
// kernel and Synchronize in turn. Every fault must come back as an error
// (never swallowed, never a panic), the engine must free everything it
// allocated (Used() == 0 after Close), and the next clean run on the same
// device must produce the clean tokens.
func TestFaultInjection(t *testing.T) {
	testFaults(t, faultGen{prompt: 4, tokens: 6, window: 4}, func(t *testing.T) device.Device {
		d, err := host.New(host.Options{Capacity: 1 << 30, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// TestEmuFaultInjection is the same on the CUDA backend over the CPU
// emulator of the driver (internal/emu; it skips without g++, as every
// TestEmu test does, and `make test` runs it from scripts/emu-test.sh). The
// emulator runs a stories260K token in ~0.2 s, so the generation is the
// shortest that still has a prefill, a draft and a check (or two dense
// steps): 580 fault points, about two minutes; make test samples them
// with -short.
func TestEmuFaultInjection(t *testing.T) {
	emu.Use(t)
	testFaults(t, faultGen{prompt: 2, tokens: 2, window: 2}, func(t *testing.T) device.Device {
		d, err := device.Open("cuda", device.Config{Capacity: 256 << 20})
		if err != nil {
			t.Fatal("the emulated CUDA device does not open:", err)
		}
		return d
	})
}

func testFaults(t *testing.T, g faultGen, open func(t *testing.T) device.Device) {
	m, err := model.Open(filepath.Join(fixtures.Stories(t), "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := oracleTokens(t)[:g.prompt]
	for _, c := range faultCases {
		t.Run(c.name, func(t *testing.T) {
			dev := open(t)
			defer dev.Close()
			f := devicetest.NewFaulty(dev)
			// counts are the calls New and Generate made (Close's own
			// Synchronize calls cannot report an error, so they are not
			// fault points).
			var counts [devicetest.NumOps]int
			run := func() ([]int, error) {
				d := DefaultDecoding()
				// The fixed window policy: the adaptive one follows measured
				// pass times, so its calls differ from run to run.
				d.Mode, d.Window, d.Policy = c.mode, g.window, corrector.PolicyFixed
				e, err := New(m, f, Options{Decoding: d, StreamAll: c.stream, Context: 32, Workers: 1})
				if err != nil {
					if u := dev.Used(); u != 0 {
						t.Errorf("New failed (%v) and left %d bytes allocated", err, u)
					}
					return nil, err
				}
				res, err := e.Generate(context.Background(), Request{Prompt: prompt, MaxTokens: g.tokens}, nil)
				for op := range devicetest.NumOps {
					counts[op] = f.Calls(op)
				}
				e.Close()
				if u := dev.Used(); u != 0 {
					t.Errorf("%d bytes still allocated after Close", u)
				}
				if res == nil {
					return nil, err
				}
				return res.Tokens, err
			}
			f.FailAt(0, 0)
			want, err := run()
			if err != nil {
				t.Fatal(err)
			}
			points := counts
			t.Logf("fault points: alloc %d, copy %d, kernel %d, synchronize %d",
				points[devicetest.OpAlloc], points[devicetest.OpCopy], points[devicetest.OpKernel], points[devicetest.OpSync])
			// With -short (make test's race-detector run, where each run
			// costs several times more, and its emulator run) every tenth
			// copy and kernel is failed; every Alloc and Synchronize still
			// is. Without it (unit, or the test run by hand), every one.
			stride := 1
			if testing.Short() {
				stride = 10
			}
			for op := range devicetest.NumOps {
				step := 1
				if op == devicetest.OpCopy || op == devicetest.OpKernel {
					step = stride
				}
				for n := 1; n <= points[op]; n += step {
					f.FailAt(op, n)
					_, err := run()
					switch {
					case !f.Fired():
						t.Errorf("%s call %d: not reached (the clean run made %d)", op, n, points[op])
					case !errors.Is(err, devicetest.ErrInjected):
						t.Fatalf("%s call %d: got %v, want the injected error", op, n, err)
					}
					if n%16 < step || n+step > points[op] { // the device still works
						f.FailAt(0, 0)
						got, err := run()
						if err != nil || !slices.Equal(got, want) {
							t.Fatalf("after %s fault %d: clean run gave %v, %v; want %v", op, n, got, err, want)
						}
					}
				}
			}
		})
	}
}
