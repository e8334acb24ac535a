package nat

import "fmt"

// checkInvariants verifies the table's structure: every live flow is found
// by both of its tuples, the live count matches, and live plus free slots
// make up the capacity. It walks everything: for tests and fuzzing only,
// with no packets in flight.
func (e *Engine) checkInvariants() error {
	t := e.tab
	live := 0
	for i := 1; i < len(t.flows); i++ {
		f := &t.flows[i]
		if f.gen.Load()&1 == 1 {
			continue
		}
		live++
		for d := range 2 {
			w := keyWords(&f.nodes[d])
			ref, _, ok := t.lookup(&w)
			if !ok || ref.index() != uint32(i) || ref.dir() != Dir(d) {
				return fmt.Errorf("flow %d direction %d: lookup by its own tuple gives %v (found %v)", i, d, ref, ok)
			}
		}
	}
	if int64(live) != t.count.Load() {
		return fmt.Errorf("%d live flows, count says %d", live, t.count.Load())
	}
	free := 0
	for idx := uint32(t.free.Load()); idx != 0; idx = t.flows[idx].freeNext.Load() {
		if t.flows[idx].gen.Load()&1 == 0 {
			return fmt.Errorf("slot %d is on the free stack but live", idx)
		}
		if free++; free > len(t.flows) {
			return fmt.Errorf("free stack has a cycle")
		}
	}
	if live+free != t.capacity() {
		return fmt.Errorf("%d live + %d free != capacity %d", live, free, t.capacity())
	}
	return nil
}
