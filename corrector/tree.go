package corrector

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Token trees (adaptive policy, Width > 1).
//
// A tree is drafted on the branch mechanism the beams use: every
// root-to-leaf path is one branch (one KV cache), all paths draft in
// lockstep (one batched Draft per depth), and a new path starts as a Fork
// of the path it leaves, so it shares that path's prefix. A node opens extra
// children only where the sparse model is unsure of its next token (top
// probability below Plan.BranchBelow) and only while each extra path is
// worth its rows in the check and its share of the sparse passes at the
// plan's rate (policy.worthBranch); paths are served in order of their
// estimated chance of being kept, so the likeliest get the budget first.
// Every path is verified in ONE batched Verify, and the longest path the
// acceptance rule keeps wins: its branch becomes branch 0 (Truncate, then
// Fork(0, winner)), exactly as a winning beam does.
//
// Acceptance stays exact:
//
//   - Greedy: a node's children are its sparse top candidates (EOS never
//     one); a child is kept if the rule keeps it against the full model's
//     logits at its parent, trying children in rank order. Under strict
//     acceptance at most one child can equal the full model's argmax, so the
//     kept path and the token after it are exactly dense greedy decoding.
//   - Sampling: a node's children are drawn from the sparse distribution q
//     WITHOUT replacement (each draw from q with the earlier children removed
//     and renormalised). They are tried in draw order with the
//     speculative-sampling rule against a target that starts as the full
//     model's distribution p: child x drawn from q_j is kept with probability
//     min(1, p(x)/q_j(x)); if not, the target becomes normalise(max(0, p -
//     q_j)) and the next child is tried; if none is kept the full model's
//     token is drawn from the last target. Each step is plain speculative
//     sampling for its target and proposal, so by induction the kept token is
//     distributed as p (the argument of SpecInfer's multi-draft rule and of
//     Sequoia's without-replacement variant). How many children a node gets
//     depends only on the sparse model's outputs, never on the full model's,
//     so it does not bias the result.

// tnode is one node of a draft tree; node 0 is the root, the window's first
// token (the newest final token).
type tnode struct {
	tok, parent, depth int
	// branch is the branch whose path created this node; Verify's row for
	// the node (the full model's logits after it) is read from that branch.
	branch int
	kids   []int     // candidates for the next token, in proposal order
	reach  float64   // estimated chance that this node is kept
	conf   float64   // the sparse model's top probability for the next token
	q      []float64 // sampling: the distribution the kids were drawn from
}

// treeWindow drafts, checks and accepts one token tree of at most pl.Width
// paths and pl.Drafts drafts per path.
func (g *gen) treeWindow(pl *Plan) error {
	sampling := !g.sampler.Greedy()
	nodes := []tnode{{tok: g.last, parent: -1, reach: 1}}
	leaves := []int{0} // leaf node of each branch's path
	d := 0
	for step := range pl.Drafts {
		feed := make([]int, len(leaves))
		for b, n := range leaves {
			feed[b] = nodes[n].tok
		}
		lgs, err := g.draft(feed, g.pos+step)
		if err != nil {
			return err
		}
		d++
		dists := make([][]float64, len(leaves))
		stop := true
		for b, n := range leaves {
			if sampling {
				dists[b] = g.sampler.Distribution(nil, lgs[b], g.cfg.EOS)
			} else {
				dists[b] = softmaxExcept(lgs[b], g.cfg.EOS)
			}
			nodes[n].conf = slices.Max(dists[b])
			g.pol.acc.drafted(nodes[n].conf)
			if nodes[n].conf >= pl.StopBelow {
				stop = false
			}
		}
		order := make([]int, len(leaves))
		for b := range order {
			order[b] = b
		}
		slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(nodes[leaves[y]].reach, nodes[leaves[x]].reach) })
		for _, b := range order {
			n := leaves[b]
			dist := dists[b]
			ranked := topN(dist, pl.Width, g.cfg.EOS)
			if len(ranked) == 0 || dist[ranked[0]] <= 0 {
				return fmt.Errorf("corrector: every token of the vocabulary is an EOS id; nothing to draft")
			}
			k := 1
			if nodes[n].conf < pl.BranchBelow {
				for k < len(ranked) && dist[ranked[k]] > 0 &&
					g.pol.worthBranch(*pl, nodes[n].reach*dist[ranked[k]], step, pl.Drafts, len(leaves)+k-1) {
					k++
				}
			}
			kids := ranked[:k]
			if sampling {
				nodes[n].q = dist
				kids = drawWithout(dist, k, g.sampler.RNG)
			}
			for j, tok := range kids {
				c := len(nodes)
				br, r := b, nodes[n].reach*g.pol.acc.cal(nodes[n].conf)
				if j > 0 {
					br, r = len(leaves), nodes[n].reach*dist[tok]
					if err := g.m.Fork(br, b); err != nil {
						return fmt.Errorf("corrector: fork tree branch %d from %d: %w", br, b, err)
					}
					leaves = append(leaves, c)
				} else {
					leaves[b] = c
				}
				nodes = append(nodes, tnode{tok: tok, parent: n, depth: step + 1, branch: br, reach: r})
				nodes[n].kids = append(nodes[n].kids, c)
			}
		}
		if stop {
			break
		}
	}
	g.st.Drafted += d

	toks := make([][]int, len(leaves))
	for b, leaf := range leaves {
		toks[b] = pathTo(nodes, leaf)
	}
	lgs, err := g.verify(toks, g.pos)
	if err != nil {
		return err
	}
	cur, tok := 0, 0
	for {
		nd := &nodes[cur]
		row := lgs[nd.branch][nd.depth]
		next := -1
		if sampling {
			next, tok = g.speculateNode(row, nd, nodes)
		} else {
			for _, c := range nd.kids {
				if g.keeps(row, nodes[c].tok) {
					next = c
					break
				}
			}
			if next < 0 {
				tok = Argmax(row)
			}
		}
		if len(nd.kids) > 0 {
			g.judged(nd.conf, next == nd.kids[0])
			if next != nd.kids[0] && len(nd.kids) > 1 {
				g.pol.acc.observeAlt(next >= 0)
			}
		}
		if next < 0 {
			break
		}
		cur = next
	}
	m, win := nodes[cur].depth, nodes[cur].branch
	g.windowDone(pl, d, len(leaves), m)
	if m < d {
		if err := g.truncate(win, g.pos+m+1); err != nil {
			return err
		}
	}
	if win != 0 {
		if err := g.m.Fork(0, win); err != nil {
			return fmt.Errorf("corrector: make winning tree branch %d the sequence: %w", win, err)
		}
	}
	return g.finishCheck(pathTo(nodes, cur)[1:], tok, win, d)
}

// speculateNode applies the multi-candidate speculative-sampling rule at one
// node given the full model's logits after it: it returns the kept child (a
// node index) or -1 and the full model's token drawn from the final target.
// With no children it draws the bonus token with the run's sampler.
func (g *gen) speculateNode(row []float32, nd *tnode, nodes []tnode) (int, int) {
	if len(nd.kids) == 0 {
		return -1, g.sampler.Sample(row)
	}
	if g.cfg.Accept == AcceptAll {
		return nd.kids[0], 0
	}
	g.p = g.sampler.Distribution(g.p, row, nil)
	q := slices.Clone(nd.q)
	for j, c := range nd.kids {
		if j > 0 {
			removeRenorm(q, nodes[nd.kids[j-1]].tok)
		}
		x := nodes[c].tok
		coin := float64(g.sampler.RNG.F32())
		if q[x] <= g.p[x] || coin < g.p[x]/q[x] {
			return c, 0
		}
		g.res = slices.Grow(g.res[:0], len(q))[:len(q)]
		var sum float64
		for i := range q {
			g.res[i] = max(0, g.p[i]-q[i])
			sum += g.res[i]
		}
		if !(sum > 0) { // rounding left no residual mass: fall back to p
			return -1, sampleDist(g.p, g.sampler.RNG.F32())
		}
		copy(g.p, normalize(g.res))
	}
	return -1, sampleDist(g.p, g.sampler.RNG.F32())
}

// drawWithout draws up to k distinct ids from q without replacement: each
// draw from q with the earlier draws removed and renormalised (one RNG draw
// each). q is not modified.
func drawWithout(q []float64, k int, rng *RNG) []int {
	cur := slices.Clone(q)
	out := make([]int, 0, k)
	for range k {
		var sum float64
		for _, v := range cur {
			sum += v
		}
		if !(sum > 0) {
			break
		}
		x := sampleDist(cur, rng.F32())
		out = append(out, x)
		removeRenorm(cur, x)
	}
	return out
}

// removeRenorm sets p[x] to 0 and renormalises p: the proposal of the next
// draw without replacement.
func removeRenorm(p []float64, x int) {
	p[x] = 0
	normalize(p)
}

// softmaxExcept is softmax(x) in float64 with the ids in skip given
// probability 0 (as if their logits were -inf).
func softmaxExcept(x []float32, skip []int) []float64 {
	out := make([]float64, len(x))
	m := -1.0
	first := true
	for i, v := range x {
		if !slices.Contains(skip, i) && (first || float64(v) > m) {
			m, first = float64(v), false
		}
	}
	if first {
		return out
	}
	var sum float64
	for i, v := range x {
		if slices.Contains(skip, i) {
			continue
		}
		out[i] = math.Exp(float64(v) - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// pathTo returns the tokens from the root to node n.
func pathTo(nodes []tnode, n int) []int {
	var rev []int
	for ; n >= 0; n = nodes[n].parent {
		rev = append(rev, nodes[n].tok)
	}
	slices.Reverse(rev)
	return rev
}
