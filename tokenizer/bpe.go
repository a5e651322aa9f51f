package tokenizer

// The merge engine shared by every kind. A word starts as a list of symbols
// (token ids); adjacent pairs that can merge go into a min-heap keyed by
// (priority, left position), and the best pair is merged until none is left.
// Stale heap entries (a side already merged away) are skipped when popped.
// That is O(n log n) in the word length, where the textbook "rescan all pairs
// after each merge" loop of llama2.c is O(n^2); both pick the same pair at
// every step, because ties go to the leftmost pair in both.

type symbol struct {
	id         int32 // -1 once merged into its left neighbour
	prev, next int32 // -1 at the ends
}

type candidate struct {
	prio        float64 // lower merges first
	left, right int32   // symbol positions
	lid, rid    int32   // ids when queued, to detect stale entries
	merged      int32
}

func (a *candidate) less(b *candidate) bool {
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	return a.left < b.left
}

type candHeap []candidate

func (h *candHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(&s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].less(&s[m]) {
			m = l
		}
		if r < n && s[r].less(&s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// mergeMode says how a pair of adjacent symbols is scored.
type mergeMode uint8

const (
	// mergeByScore: the pair merges if the concatenation of the two pieces
	// is a token; the token with the highest score wins (SentencePiece BPE,
	// llama2.c, GGUF "llama").
	mergeByScore mergeMode = iota
	// mergeByRank: the pair merges if it is in the merges list; the lowest
	// rank (list index) wins (HF tokenizer.json and GGUF "gpt2").
	mergeByRank
	// mergeByConcatRank: the pair merges if the concatenated bytes are a
	// token; the lowest rank, which is the id, wins (tiktoken).
	mergeByConcatRank
)

type mergeResult struct {
	rank   int32
	merged int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// pairPrio scores the pair (a, b); ok is false if it cannot merge.
func (t *Tokenizer) pairPrio(a, b int32, buf *[]byte) (prio float64, merged int32, ok bool) {
	switch t.mode {
	case mergeByRank:
		m, ok := t.merges[pairKey(a, b)]
		if !ok {
			return 0, 0, false
		}
		return float64(m.rank), m.merged, true
	default:
		if t.noMerge != nil && (t.noMerge[a] || t.noMerge[b]) {
			return 0, 0, false
		}
		*buf = append(append((*buf)[:0], t.key[a]...), t.key[b]...)
		id, ok := t.lookup[string(*buf)]
		if !ok {
			return 0, 0, false
		}
		if t.mode == mergeByScore {
			return -float64(t.scores[id]), int32(id), true
		}
		return float64(id), int32(id), true
	}
}

// merge applies BPE to the symbols in ids (in place) and appends the result
// to out.
func (t *Tokenizer) merge(ids []int32, out []int) []int {
	if len(ids) < 2 {
		for _, id := range ids {
			out = append(out, int(id))
		}
		return out
	}
	syms := make([]symbol, len(ids))
	for i, id := range ids {
		syms[i] = symbol{id: id, prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[len(syms)-1].next = -1
	h := make(candHeap, 0, len(ids))
	var buf []byte
	try := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		if p, m, ok := t.pairPrio(syms[l].id, syms[r].id, &buf); ok {
			h.push(candidate{prio: p, left: l, right: r, lid: syms[l].id, rid: syms[r].id, merged: m})
		}
	}
	for i := 0; i+1 < len(syms); i++ {
		try(int32(i), int32(i+1))
	}
	for len(h) > 0 {
		c := h.pop()
		l, r := &syms[c.left], &syms[c.right]
		if l.id != c.lid || r.id != c.rid || l.next != c.right {
			continue // stale: one side has merged since this entry was queued
		}
		l.id = c.merged
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = c.left
		}
		r.id = -1
		try(l.prev, c.left)
		try(c.left, l.next)
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	return out
}
