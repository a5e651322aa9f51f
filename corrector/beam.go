package corrector

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// beam is one drafted sequence of a window; beams[b] lives in branch b.
type beam struct {
	toks  []int   // the window so far: the last final token, then drafts
	score float64 // cumulative sparse log-prob of the drafts
}

type candidate struct {
	parent int // branch of the beam it extends
	tok    int
	score  float64
}

// beamWindow runs one Sirius window at width w > 1 (greedy). The sparse phase
// keeps the w best sequences by cumulative log-prob (the sparse model's
// log-softmax at temperature 1, EOS never a candidate): each beam expands its
// top-w next tokens and the best w of all candidates survive (ties: lower
// parent branch, then lower token id). All beams are drafted in one batched
// Draft per step and checked in one batched Verify; the beam with the most
// leading accepted drafts wins (ties: higher cumulative log-prob, then lower
// branch) and becomes branch 0.
//
// Branch bookkeeping: the first surviving child of a beam stays in its
// parent's branch; the others move into branches whose beams died (or new
// ones) and Fork copies the parent's cache there. At the last expansion only
// branches that have not been forked in this window need a Fork: their
// prefix must be valid, while stale window positions are rewritten by Verify.
func (g *gen) beamWindow() error {
	d := g.depth()
	w := g.cfg.Width
	beams := []beam{{toks: []int{g.last}}}
	forked := map[int]bool{0: true} // branches holding this window's prefix
	for step := range d {
		feed := make([]int, len(beams))
		for b := range beams {
			feed[b] = beams[b].toks[step]
		}
		lgs, err := g.draft(feed, g.pos+step)
		if err != nil {
			return err
		}
		var cands []candidate
		for b, lg := range lgs {
			lp := logSoftmax(lg)
			for _, tok := range topN(lp, w, g.cfg.EOS) {
				cands = append(cands, candidate{b, tok, beams[b].score + lp[tok]})
			}
		}
		if len(cands) == 0 {
			return fmt.Errorf("corrector: every token of the vocabulary is an EOS id; nothing to draft")
		}
		slices.SortStableFunc(cands, func(a, b candidate) int {
			if c := cmp.Compare(b.score, a.score); c != 0 {
				return c
			}
			if c := cmp.Compare(a.parent, b.parent); c != 0 {
				return c
			}
			return cmp.Compare(a.tok, b.tok)
		})
		cands = cands[:min(w, len(cands))]
		next, err := g.placeBeams(beams, cands, forked, step == d-1)
		if err != nil {
			return err
		}
		beams = next
	}
	g.st.Drafted += d

	toks := make([][]int, len(beams))
	for b := range beams {
		toks[b] = beams[b].toks
	}
	lgs, err := g.verify(toks, g.pos)
	if err != nil {
		return err
	}
	best, bestN := 0, -1
	for b := range beams {
		n := g.acceptGreedy(beams[b].toks, lgs[b])
		if n > bestN || (n == bestN && beams[b].score > beams[best].score) {
			best, bestN = b, n
		}
	}
	n := bestN
	tok := Argmax(lgs[best][n])
	if n < d {
		if err := g.truncate(best, g.pos+n+1); err != nil {
			return err
		}
	}
	if best != 0 {
		if err := g.m.Fork(0, best); err != nil {
			return fmt.Errorf("corrector: make winning branch %d the sequence: %w", best, err)
		}
	}
	return g.finishCheck(beams[best].toks[1:n+1], tok, best, d)
}

// placeBeams assigns the surviving candidates to branches and issues the
// Forks that give each its parent's cache. It returns beams indexed by branch.
func (g *gen) placeBeams(old []beam, cands []candidate, forked map[int]bool, last bool) ([]beam, error) {
	next := make([]beam, len(cands))
	taken := make([]bool, len(cands))
	var movers []int // candidates that need a branch other than their parent's
	stays := make(map[int]bool)
	for i, c := range cands {
		if !stays[c.parent] && c.parent < len(cands) {
			stays[c.parent] = true
			taken[c.parent] = true
			next[c.parent] = beam{append(slices.Clone(old[c.parent].toks), c.tok), c.score}
			continue
		}
		movers = append(movers, i)
	}
	free := 0
	for _, i := range movers {
		for taken[free] {
			free++
		}
		c := cands[i]
		taken[free] = true
		next[free] = beam{append(slices.Clone(old[c.parent].toks), c.tok), c.score}
		if !last || !forked[free] {
			if err := g.m.Fork(free, c.parent); err != nil {
				return nil, fmt.Errorf("corrector: fork beam branch %d from %d: %w", free, c.parent, err)
			}
			forked[free] = true
		}
	}
	return next, nil
}

// logSoftmax returns log(softmax(x)) in float64.
func logSoftmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, float64(v))
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(sum)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - lse
	}
	return out
}

// topN returns up to n ids with the largest values, skipping the ids in skip,
// best first (ties: lower id). n is a beam width, so a simple insertion pass
// is enough.
func topN(x []float64, n int, skip []int) []int {
	top := make([]int, 0, n+1)
	for i, v := range x {
		if slices.Contains(skip, i) {
			continue
		}
		if len(top) == n && v <= x[top[n-1]] {
			continue
		}
		j := len(top)
		top = append(top, i)
		for j > 0 && x[top[j-1]] < v {
			top[j] = top[j-1]
			j--
		}
		top[j] = i
		if len(top) > n {
			top = top[:n]
		}
	}
	return top
}
