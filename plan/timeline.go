package plan

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Span is one interval of work on a track of a timeline: a copy on the
// "copy" stream or a layer on the "compute" stream.
type Span struct {
	Track      string
	Name       string
	Start, End time.Duration
}

// PassTimeline simulates one pass of a phase through the double-buffered
// pipeline the prediction assumes and returns its spans: the copy of stage s
// starts when the copy of s-1 has finished and the slot it reuses (stage
// s-2's) has been computed; its compute starts when its copy and stage s-1's
// compute have finished. Stages with nothing to copy get no copy span. The
// pass length can exceed the phase's Seconds (the sum of max(link, compute))
// by the pipeline fill, the first copy that nothing overlaps.
func PassTimeline(mp ModePrediction, phase string) ([]Span, error) {
	var ph *PhasePrediction
	for i := range mp.Phases {
		if mp.Phases[i].Phase == phase {
			ph = &mp.Phases[i]
		}
	}
	if ph == nil {
		names := make([]string, len(mp.Phases))
		for i := range mp.Phases {
			names[i] = mp.Phases[i].Phase
		}
		sort.Strings(names)
		return nil, fmt.Errorf("mode %s has no phase %q (has %s)", mp.Mode, phase, strings.Join(names, ", "))
	}
	dur := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	var spans []Span
	var copyEnd time.Duration
	computeEnd := make([]time.Duration, len(ph.Stages))
	for i, st := range ph.Stages {
		name := "head"
		if st.Layer >= 0 {
			name = fmt.Sprintf("L%d", st.Layer)
		}
		ready := copyEnd
		if st.StreamedBytes > 0 {
			start := copyEnd
			if i >= 2 && computeEnd[i-2] > start {
				start = computeEnd[i-2]
			}
			copyEnd = start + dur(st.LinkSeconds)
			ready = copyEnd
			spans = append(spans, Span{Track: "copy", Name: name, Start: start, End: copyEnd})
		} else {
			ready = 0
		}
		start := ready
		if i >= 1 && computeEnd[i-1] > start {
			start = computeEnd[i-1]
		}
		computeEnd[i] = start + dur(st.ComputeSeconds)
		spans = append(spans, Span{Track: "compute", Name: name, Start: start, End: computeEnd[i]})
	}
	return spans, nil
}
