package plan

import (
	"strconv"
	"testing"
	"time"
)

// The simulated double-buffered pass keeps the pipeline's rules: one copy at
// a time, a layer computes after its copy and after the previous layer, and
// a copy reuses the slot of the layer two back only once it has computed.
func TestPassTimeline(t *testing.T) {
	pred, err := Predict(shape(t, "llama-2-70b"), Params{GPU: gpu(t, "rtx-3090"), Link: 12.5e9})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range pred.Modes {
		for _, ph := range m.Phases {
			spans, err := PassTimeline(m, ph.Phase)
			if err != nil {
				t.Fatal(err)
			}
			copyEnd := map[string]time.Duration{}
			computeEnd := map[string]time.Duration{}
			order := map[string]int{}
			for i, st := range ph.Stages {
				name := "head"
				if st.Layer >= 0 {
					name = "L" + strconv.Itoa(st.Layer)
				}
				order[name] = i
			}
			var lastCopy, lastCompute time.Duration
			for _, s := range spans {
				switch s.Track {
				case "copy":
					if s.Start < lastCopy {
						t.Fatalf("%s/%s: copy %s overlaps the previous copy", m.Mode, ph.Phase, s.Name)
					}
					lastCopy = s.End
					copyEnd[s.Name] = s.End
					if i := order[s.Name]; i >= 2 {
						two := ph.Stages[i-2]
						prev := "L" + strconv.Itoa(two.Layer)
						if s.Start < computeEnd[prev] {
							t.Fatalf("%s/%s: copy of %s starts before %s frees its slot", m.Mode, ph.Phase, s.Name, prev)
						}
					}
				case "compute":
					if e, ok := copyEnd[s.Name]; ok && s.Start < e {
						t.Fatalf("%s/%s: %s computes before its copy ends", m.Mode, ph.Phase, s.Name)
					}
					if s.Start < lastCompute {
						t.Fatalf("%s/%s: %s computes before the previous layer ends", m.Mode, ph.Phase, s.Name)
					}
					lastCompute = s.End
					computeEnd[s.Name] = s.End
				}
			}
			// The simulated pass can only be longer than the sum of
			// max(link, compute), by at most the first stage's copy.
			total := lastCompute.Seconds()
			if total < ph.Seconds*(1-1e-6) || total > ph.Seconds+ph.Stages[0].LinkSeconds+1e-6 {
				t.Errorf("%s/%s: simulated %.4f s, predicted %.4f s", m.Mode, ph.Phase, total, ph.Seconds)
			}
		}
	}
	if _, err := PassTimeline(*pred.Mode(Dense), PhaseCheck); err == nil {
		t.Error("dense has no check phase")
	}
}
