package proxy

// pick chooses a usable member by the balancer's lbmethod, exactly as
// mod_lbmethod_byrequests, _bybusyness and _bytraffic do (Apache 2.4
// proxy_balancer_get_best_worker): members of the lowest lbset that has a
// usable one, hot standbys only when no other member is usable. It
// returns nil when no member is usable.
//
// Why not sched's wrr: Apache's byrequests keeps each member's running
// lbstatus across failures and health changes (only usable members take
// part in a round), so its order after a member fails differs from a
// rebuilt wrr sequence. The test checks that both agree on a static set.
func (b *balancer) pick(now int64) *worker {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, standby := range []bool{false, true} {
		var best *worker
		var total int64
		var minTraffic int64
		for _, w := range b.members {
			if w.w.HotStandby != standby || !w.usable(now) {
				continue
			}
			switch b.method {
			case "bytraffic":
				t := w.transferred.Load()/w.lbfactor + w.read.Load()/w.lbfactor
				if best == nil || t < minTraffic {
					best, minTraffic = w, t
				}
			case "bybusyness":
				w.lbstatus += w.lbfactor
				total += w.lbfactor
				if best == nil {
					best = w
				} else if wb, bb := w.busy.Load(), best.busy.Load(); wb < bb || wb == bb && w.lbstatus > best.lbstatus {
					best = w
				}
			default: // byrequests
				w.lbstatus += w.lbfactor
				total += w.lbfactor
				if best == nil || w.lbstatus > best.lbstatus {
					best = w
				}
			}
		}
		if best != nil {
			best.lbstatus -= total
			return best
		}
	}
	return nil
}
