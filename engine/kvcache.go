package engine

import (
	"fmt"

	"offload/device"
	"offload/model"
)

// KVCache holds the keys and values of every layer for each branch (Sirius
// beams draft on separate branches; plain decoding uses branch 0). Positions
// past a branch's length hold stale values that the next pass overwrites,
// which is what makes rollback (Truncate) free.
type KVCache struct {
	dev  device.Device
	bufs []device.Buffer
	k, v [][]device.Tensor // [branch][layer], each [context, kvDim]
	n    []int             // valid positions per branch
	ctx  int
}

// newKVCache allocates branches x layers x 2 x context x kvDim float32s.
func newKVCache(dev device.Device, cfg model.Config, branches, context int) (*KVCache, error) {
	c := &KVCache{dev: dev, n: make([]int, branches), ctx: context,
		k: make([][]device.Tensor, branches), v: make([][]device.Tensor, branches)}
	per := device.F32.RowBytes(cfg.KVDim()) * int64(context)
	for b := range branches {
		buf, err := dev.Alloc(2*per*int64(cfg.Layers), fmt.Sprintf("kv cache %d", b))
		if err != nil {
			c.free()
			return nil, fmt.Errorf("kv cache: %w", err)
		}
		c.bufs = append(c.bufs, buf)
		c.k[b], c.v[b] = make([]device.Tensor, cfg.Layers), make([]device.Tensor, cfg.Layers)
		for l := range cfg.Layers {
			o := int64(2*l) * per
			c.k[b][l] = tensorAt(buf, o, device.F32, context, cfg.KVDim())
			c.v[b][l] = tensorAt(buf, o+per, device.F32, context, cfg.KVDim())
		}
	}
	return c, nil
}

// kvBytes is what newKVCache allocates.
func kvBytes(cfg model.Config, branches, context int) int64 {
	return int64(branches) * 2 * int64(cfg.Layers) * int64(context) * device.F32.RowBytes(cfg.KVDim())
}

func (c *KVCache) free() {
	for _, b := range c.bufs {
		c.dev.Free(b)
	}
	c.bufs = nil
}

// Branches is the number of branches.
func (c *KVCache) Branches() int { return len(c.n) }

// Context is the number of positions each branch holds.
func (c *KVCache) Context() int { return c.ctx }

// Len is the number of valid positions of branch b.
func (c *KVCache) Len(b int) int { return c.n[b] }

// Layer is branch b's key and value cache of layer l.
func (c *KVCache) Layer(b, l int) (k, v device.Tensor) { return c.k[b][l], c.v[b][l] }

// Reset empties every branch.
func (c *KVCache) Reset() { clear(c.n) }

// checkAppend says whether n rows at position pos can be written to branch
// b: rewriting earlier positions (a check) is fine, gaps are not.
func (c *KVCache) checkAppend(b, pos, n int) error {
	switch {
	case b < 0 || b >= len(c.n):
		return fmt.Errorf("branch %d: the cache has %d", b, len(c.n))
	case pos < 0 || pos > c.n[b]:
		return fmt.Errorf("branch %d: position %d leaves a gap after %d cached", b, pos, c.n[b])
	case pos+n > c.ctx:
		return fmt.Errorf("%w: %d positions of %d", ErrContextFull, pos+n, c.ctx)
	}
	return nil
}

// Append records that a pass wrote positions [pos, pos+n) of branch b:
// its length becomes pos+n.
func (c *KVCache) Append(b, pos, n int) { c.n[b] = pos + n }

// Truncate drops branch b's positions beyond n (Sirius rollback).
func (c *KVCache) Truncate(b, n int) error {
	if b < 0 || b >= len(c.n) || n < 0 || n > c.n[b] {
		return fmt.Errorf("truncate branch %d to %d: out of range", b, n)
	}
	c.n[b] = n
	return nil
}

// Fork makes branch dst a copy of branch src's valid positions, on stream s.
func (c *KVCache) Fork(s device.Stream, dst, src int) error {
	if dst == src {
		return nil
	}
	if dst < 0 || dst >= len(c.n) || src < 0 || src >= len(c.n) {
		return fmt.Errorf("fork branch %d from %d: the cache has %d", dst, src, len(c.n))
	}
	for l := range c.k[src] {
		for _, kv := range [2][][]device.Tensor{c.k, c.v} {
			from, to := kv[src][l].Slice(0, c.n[src]), kv[dst][l]
			if from.Bytes() == 0 {
				continue
			}
			if err := c.dev.CopyDevice(s, to.Buf, to.Off, from.Buf, from.Off, from.Bytes()); err != nil {
				return err
			}
		}
	}
	c.n[dst] = c.n[src]
	return nil
}
