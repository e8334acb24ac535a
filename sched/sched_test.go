package sched

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

func TestNames(t *testing.T) {
	names := Names()
	if len(names) != 14 {
		t.Fatalf("Names() = %v, want the 14 algorithms", names)
	}
	for _, name := range names {
		s, err := New(name, Config{})
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		if s.Name() != name {
			t.Errorf("New(%q).Name() = %q", name, s.Name())
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"roundrobin", Config{}, ErrUnknownScheduler},
		{"", Config{}, ErrUnknownScheduler},
		{"WRR", Config{}, ErrUnknownScheduler},
		{"mh", Config{TableSize: 65536}, ErrTableSize},
		{"mh", Config{TableSize: 1}, ErrTableSize},
		{"sh", Config{TableSize: 16777259}, ErrTableSize}, // prime, above MaxTableSize
		{"rr", Config{Port: true}, ErrOption},
		{"dh", Config{Port: true}, ErrOption},
		{"mh", Config{Fallback: true}, ErrOption},
		{"wlc", Config{TableSize: 251}, ErrOption},
	} {
		_, err := New(tc.name, tc.cfg)
		if !errors.Is(err, tc.want) {
			t.Errorf("New(%q, %+v) = %v, want %v", tc.name, tc.cfg, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cfg Config
	}{{Config{TableSize: 2}}, {Config{TableSize: 251, Port: true, Fallback: true}}} {
		if _, err := New("sh", tc.cfg); err != nil {
			t.Errorf("New(sh, %+v): %v", tc.cfg, err)
		}
	}

	for _, name := range Names() {
		s := mustNew(t, name, Config{})
		good := mkBackends(3, equalWeights(1))
		mustUpdate(t, s, good)
		before := s.Dests()

		bad := slices.Clone(good)
		bad[1].Weight = MaxWeight + 1
		if err := s.Update(bad); !errors.Is(err, ErrWeight) {
			t.Errorf("%s: weight %d: %v, want ErrWeight", name, bad[1].Weight, err)
		}
		bad = append(slices.Clone(good), good[0])
		if err := s.Update(bad); !errors.Is(err, ErrDuplicate) {
			t.Errorf("%s: duplicate: %v, want ErrDuplicate", name, err)
		}
		if err := s.Update(mkBackends(MaxBackends+1, equalWeights(1))); !errors.Is(err, ErrTooMany) {
			t.Errorf("%s: %d backends: %v, want ErrTooMany", name, MaxBackends+1, err)
		}
		if !slices.Equal(s.Dests(), before) {
			t.Errorf("%s: a failed Update changed the set", name)
		}
	}

	s := mustNew(t, "mh", Config{TableSize: 7})
	if err := s.Update(mkBackends(8, equalWeights(1))); !errors.Is(err, ErrTableSize) {
		t.Errorf("mh M=7, 8 backends: %v, want ErrTableSize", err)
	}
	down := mkBackends(8, equalWeights(1))
	down[7].Down = true // mh only tables available backends
	if err := s.Update(down); err != nil {
		t.Errorf("mh M=7, 7 available of 8: %v", err)
	}
	sh := mustNew(t, "sh", Config{TableSize: 7})
	if err := sh.Update(down); !errors.Is(err, ErrTableSize) {
		t.Errorf("sh M=7, 8 backends (one down): %v, want ErrTableSize", err)
	}
}

// TestNoneAvailable: with nothing available every algorithm says so.
func TestNoneAvailable(t *testing.T) {
	sets := map[string][]Backend{
		"new":       nil,
		"empty":     {},
		"all down":  mkBackends(4, equalWeights(1)),
		"quiescent": mkBackends(4, equalWeights(0)),
		"mixed":     mkBackends(4, equalWeights(0)),
	}
	for i := range sets["all down"] {
		sets["all down"][i].Down = true
	}
	sets["mixed"][1].Down, sets["mixed"][1].Weight = true, 5
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range Names() {
		for _, fallback := range []bool{false, true} {
			cfg := Config{Fallback: fallback}
			if fallback && name != "sh" && name != "dh" {
				continue
			}
			for setName, bs := range sets {
				s := mustNew(t, name, cfg)
				if setName != "new" {
					mustUpdate(t, s, bs)
				}
				for range 100 {
					if d, ok := s.Pick(randKey(rng)); ok || d != nil {
						t.Fatalf("%s %+v, %s: Pick = %v, %v; want nil, false", name, cfg, setName, d, ok)
					}
				}
			}
		}
	}
}

// TestNeverPicksUnavailable: down and quiescent backends are never picked,
// whatever the algorithm, set and counters.
func TestNeverPicksUnavailable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range Names() {
		cfgs := []Config{{}}
		switch name {
		case "sh":
			cfgs = append(cfgs, Config{Fallback: true}, Config{Port: true, Fallback: true})
		case "dh":
			cfgs = append(cfgs, Config{Fallback: true})
		}
		for _, cfg := range cfgs {
			s := mustNew(t, name, cfg)
			for range 30 {
				bs := mkBackends(1+rng.IntN(20), func(int) uint32 { return uint32(rng.IntN(4)) })
				for i := range bs {
					bs[i].Down = rng.IntN(4) == 0
				}
				mustUpdate(t, s, bs)
				for _, d := range s.Dests() {
					d.Add(int64(rng.IntN(3)), int64(rng.IntN(3)))
				}
				picked := 0
				for range 300 {
					i := pickIndex(t, s, bs, randKey(rng))
					if i < 0 {
						continue
					}
					picked++
					if !bs[i].available() {
						t.Fatalf("%s %+v: picked %+v", name, cfg, bs[i])
					}
				}
				anyUp := slices.ContainsFunc(bs, Backend.available)
				if name == "ovf" { // ovf also skips a backend with more active connections than its weight
					anyUp = slices.ContainsFunc(s.Dests(), func(d *Dest) bool {
						a, _ := d.Conns()
						return d.weight.Load() > 0 && a <= int64(d.weight.Load())
					})
				}
				hashNoFallback := (name == "sh" || name == "dh") && !cfg.Fallback
				if anyUp && picked == 0 && !hashNoFallback {
					t.Fatalf("%s %+v: nothing picked from a set with available backends", name, cfg)
				}
			}
		}
	}
}

// TestCountersSurviveUpdate: a backend keeps its *Dest and counters across
// updates that reorder the list or change its weight or state, and a removed
// backend with connections gets them back when re-added (IPVS's trash).
func TestCountersSurviveUpdate(t *testing.T) {
	for _, name := range Names() {
		s := mustNew(t, name, Config{})
		bs := mkBackends(4, func(i int) uint32 { return uint32(i + 1) })
		mustUpdate(t, s, bs)
		d1 := s.Dests()[1]
		d1.Add(3, 7)
		d3 := s.Dests()[3]
		d3.Add(0, 2)

		re := []Backend{bs[3], bs[2], bs[1], bs[0]}
		re[2].Weight, re[2].Down = 9, true
		mustUpdate(t, s, re)
		if got := s.Dests()[2]; got != d1 {
			t.Fatalf("%s: reordered backend got a new Dest", name)
		}
		if a, in := d1.Conns(); a != 3 || in != 7 {
			t.Fatalf("%s: counters after update = %d, %d; want 3, 7", name, a, in)
		}

		mustUpdate(t, s, bs[:3]) // remove bs[3], which has 2 inactive
		mustUpdate(t, s, bs[:2]) // remove bs[2], which has none
		d2 := s.Dests()[1]
		mustUpdate(t, s, bs)
		if got := s.Dests()[3]; got != d3 {
			t.Errorf("%s: re-added backend with connections got a new Dest", name)
		}
		if a, in := s.Dests()[3].Conns(); a != 0 || in != 2 {
			t.Errorf("%s: re-added backend has %d, %d; want 0, 2", name, a, in)
		}
		if s.Dests()[1] != d2 {
			t.Errorf("%s: kept backend got a new Dest", name)
		}
		if s.Dests()[0].ID() != bs[0].ID() || s.Dests()[0].Addr() != bs[0].Addr || s.Dests()[0].Port() != 80 {
			t.Errorf("%s: Dest identity differs from its Backend", name)
		}
	}
}

// TestPickDoesNotAllocate and TestAddDoesNotAllocate enforce the promise.
func TestPickDoesNotAllocate(t *testing.T) {
	for _, name := range Names() {
		cfg := Config{}
		if name == "sh" {
			cfg = Config{Port: true, Fallback: true}
		}
		s := mustNew(t, name, cfg)
		bs := mkBackends(50, func(i int) uint32 { return uint32(i%4 + 1) })
		bs[0].Down = true
		mustUpdate(t, s, bs)
		var s2 Scheduler = s // through the interface, as the engine calls it
		rng := rand.New(rand.NewPCG(5, 6))
		keys := make([]Key, 64)
		for i := range keys {
			keys[i] = randKey(rng)
		}
		i := 0
		if n := testing.AllocsPerRun(1000, func() {
			d, ok := s2.Pick(keys[i%len(keys)])
			i++
			if ok {
				d.Add(1, 0)
				d.Add(-1, 1)
				d.Add(0, -1)
			}
		}); n != 0 {
			t.Errorf("%s: Pick+Add allocates %v times per run", name, n)
		}
	}
}

// TestConcurrent: picks and counter updates race with set updates. Run with
// -race. Afterwards the counters balance to zero and the load-based picks
// are exact again.
func TestConcurrent(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{}
			if name == "sh" || name == "dh" {
				cfg.Fallback = true
			}
			if name == "sh" || name == "dh" || name == "mh" {
				cfg.TableSize = 1021
			}
			s := mustNew(t, name, cfg)
			bs := mkBackends(16, func(i int) uint32 { return uint32(i%3 + 1) })
			mustUpdate(t, s, bs)

			const workers, picks = 4, 2000
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Add(1)
			go func() { // health checks and config reloads
				defer wg.Done()
				rng := rand.New(rand.NewPCG(7, 8))
				for {
					select {
					case <-stop:
						return
					default:
					}
					next := slices.Clone(bs)
					rng.Shuffle(len(next), func(i, j int) { next[i], next[j] = next[j], next[i] })
					for i := range next {
						next[i].Down = rng.IntN(5) == 0
						next[i].Weight = uint32(rng.IntN(4))
					}
					if err := s.Update(next[:8+rng.IntN(9)]); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			var pw sync.WaitGroup
			for w := range workers {
				pw.Add(1)
				go func() {
					defer pw.Done()
					rng := rand.New(rand.NewPCG(9, uint64(w)))
					var open []*Dest
					for range picks {
						if d, ok := s.Pick(randKey(rng)); ok {
							d.Add(0, 1)
							if rng.IntN(2) == 0 {
								d.Add(1, -1)
								d.Add(-1, 1)
							}
							open = append(open, d)
						}
						if len(open) > 20 {
							open[0].Add(0, -1)
							open = open[1:]
						}
					}
					for _, d := range open {
						d.Add(0, -1)
					}
				}()
			}
			pw.Wait()
			close(stop)
			wg.Wait()

			mustUpdate(t, s, bs)
			for _, d := range s.Dests() {
				if a, in := d.Conns(); a != 0 || in != 0 {
					t.Errorf("%v: counters %d, %d after every flow closed", d, a, in)
				}
			}
			if s.kind.loadTracked() {
				for i, d := range s.Dests() {
					d.Add(int64(i%5), int64(i%7))
				}
				want := ipvsRef(name)(ipvsDests(s, bs))
				if got := pickIndex(t, s, bs, Key{}); got != want {
					t.Errorf("after the race: Pick = %d, IPVS = %d", got, want)
				}
			}
		})
	}
}

// TestDestLayout: the counters have a cache line of their own.
func TestDestLayout(t *testing.T) {
	var d Dest
	if off := unsafe.Offsetof(d.active); off != 64 {
		t.Errorf("Dest.active at offset %d, want 64", off)
	}
	if size := unsafe.Sizeof(d); size != 128 {
		t.Errorf("sizeof(Dest) = %d, want 128", size)
	}
	if size := unsafe.Sizeof(cursor{}); size != 64 {
		t.Errorf("sizeof(cursor) = %d, want 64", size)
	}
}

func TestBackendString(t *testing.T) {
	b := Backend{Addr: addr(0x0102), Port: 8080}
	if got, want := b.String(), "198.18.1.2:8080"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	b.Addr = [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	if got, want := b.String(), "[2001:db8::1]:8080"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestCheckChangesNothing: Check gives the error Update would, and neither
// a failing nor a passing Check changes the backend set.
func TestCheckChangesNothing(t *testing.T) {
	s, err := New("rr", Config{})
	if err != nil {
		t.Fatal(err)
	}
	bs := mkBackends(3, func(int) uint32 { return 1 })
	if err := s.Update(bs[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Check([]Backend{bs[1], bs[1]}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Check with a backend listed twice: %v, want ErrDuplicate", err)
	}
	if err := s.Check([]Backend{{Addr: bs[2].Addr, Port: bs[2].Port, Weight: MaxWeight + 1}}); !errors.Is(err, ErrWeight) {
		t.Fatalf("Check with too high a weight: %v, want ErrWeight", err)
	}
	if err := s.Check(bs[1:]); err != nil {
		t.Fatalf("Check of a good set: %v", err)
	}
	if ds := s.Dests(); len(ds) != 1 || ds[0].ID() != bs[0].ID() {
		t.Fatalf("after three Checks the set is %v, want only %v", ds, bs[0])
	}
}
