package nat

import "fmt"

// checkInvariants verifies the table's structure: every live flow is found
// by both of its tuples, the live count matches, and live plus free slots
// make up the capacity. It walks everything: for tests and fuzzing only,
// with no packets in flight.
func (e *Engine) checkInvariants() error {
	t := e.tab
	live := 0
	// The per-source counts are exactly the live flows, and the half-open
	// ones, counted by source slot.
	flows, half := map[*srcSlot]int32{}, map[*srcSlot]int32{}
	halfOpenFlows := int64(0)
	for i := 1; i < len(t.flows); i++ {
		f := &t.flows[i]
		if f.gen.Load()&1 == 1 {
			continue
		}
		live++
		if halfOpen(f.state.Load() & stateMask) {
			halfOpenFlows++
		}
		if e.src != nil { // nil for the table's own tests, which insert around the engine
			sl := e.sourceOf(f)
			flows[sl]++
			if halfOpen(f.state.Load() & stateMask) {
				half[sl]++
			}
		}
		for d := range 2 {
			w := f.key(Dir(d))
			ref, _, ok := t.lookup(&w)
			if !ok || ref.index() != uint32(i) || ref.dir() != Dir(d) {
				return fmt.Errorf("flow %d direction %d: lookup by its own tuple gives %v (found %v)", i, d, ref, ok)
			}
		}
	}
	if n := e.HalfOpen(); n != halfOpenFlows {
		return fmt.Errorf("the engine counts %d half-open flows; the table holds %d", n, halfOpenFlows)
	}
	for i := range e.srcSlots() {
		sl := &e.src.slots[i]
		if sl.flows.Load() != flows[sl] || sl.halfOpen.Load() != half[sl] {
			return fmt.Errorf("source slot %d counts %d flows, %d half-open; the table holds %d, %d", i, sl.flows.Load(), sl.halfOpen.Load(), flows[sl], half[sl])
		}
	}
	// Every indexed node is a live flow's, filed under its key's hash
	// (bucket, and tag for a slot), and indexed once.
	indexed := 0
	for si := range t.shards {
		for bi := range t.shards[si].buckets {
			b := &t.shards[si].buckets[bi]
			check := func(ref flowRef, tag uint32, inSlot bool) error {
				if ref.index() == 0 || int(ref.index()) >= len(t.flows) || t.flows[ref.index()].gen.Load()&1 == 1 {
					return fmt.Errorf("shard %d bucket %d names %v, not a live flow", si, bi, ref)
				}
				f := &t.flows[ref.index()]
				w := f.key(ref.dir())
				h := w.hash()
				if s, hb := t.locate(h); s != &t.shards[si] || hb != b || (inSlot && tagOf(h) != tag) {
					return fmt.Errorf("node %v is filed in shard %d bucket %d, not where its hash puts it", ref, si, bi)
				}
				indexed++
				return nil
			}
			for i := range b.slot {
				if e := b.slot[i].Load(); e != 0 {
					if err := check(flowRef(e), uint32(e>>32), true); err != nil {
						return err
					}
				}
			}
			n := 0
			for ref := flowRef(b.overflow.Load()); ref != 0; ref = t.chainNext(ref) {
				if err := check(ref, 0, false); err != nil {
					return err
				}
				if n++; n > 2*len(t.flows) {
					return fmt.Errorf("shard %d bucket %d: overflow chain has a cycle", si, bi)
				}
			}
		}
	}
	if indexed != 2*live {
		return fmt.Errorf("%d nodes indexed for %d live flows (want two each)", indexed, live)
	}
	if live != t.len() {
		return fmt.Errorf("%d live flows, the shards' counts say %d", live, t.len())
	}
	free := 0
	for si := range t.shards {
		for idx := uint32(t.shards[si].free.Load()); idx != 0; idx = t.flows[idx].ports[0].Load() {
			if int(idx) >= len(t.flows) {
				return fmt.Errorf("shard %d's free stack links to slot %d, past the slab", si, idx)
			}
			if t.flows[idx].gen.Load()&1 == 0 {
				return fmt.Errorf("slot %d is on shard %d's free stack but live", idx, si)
			}
			if free++; free > len(t.flows) {
				return fmt.Errorf("the free stacks have a cycle or share a slot")
			}
		}
	}
	if live+free != t.capacity() {
		return fmt.Errorf("%d live + %d free != capacity %d", live, free, t.capacity())
	}
	// Every live flow is listed once, in its original key's shard, at the
	// position livePos says; nothing else is listed.
	listed := 0
	for si := range t.shards {
		if n := t.shards[si].count.Load(); n != int64(len(t.shards[si].live)) {
			return fmt.Errorf("shard %d lists %d live flows, its count says %d", si, len(t.shards[si].live), n)
		}
		for pos, idx := range t.shards[si].live {
			f := &t.flows[idx]
			if f.gen.Load()&1 == 1 {
				return fmt.Errorf("shard %d lists slot %d, which is free", si, idx)
			}
			if w := f.key(DirOriginal); &t.shards[w.hash()&(uint64(len(t.shards))-1)] != &t.shards[si] {
				return fmt.Errorf("shard %d lists flow %d, whose original key is in another shard", si, idx)
			}
			if t.livePos[idx] != uint32(pos) {
				return fmt.Errorf("flow %d is listed at %d of shard %d, livePos says %d", idx, pos, si, t.livePos[idx])
			}
			listed++
		}
	}
	if listed != live {
		return fmt.Errorf("%d flows listed live, %d live", listed, live)
	}
	return nil
}

// srcSlots returns the per-source slots, or none for an engine built
// around a bare table in tests.
func (e *Engine) srcSlots() []srcSlot {
	if e.src == nil {
		return nil
	}
	return e.src.slots
}
