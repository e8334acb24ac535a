package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// reProcs matches the -GOMAXPROCS suffix of a benchmark name.
var reProcs = regexp.MustCompile(`-[0-9]+$`)

// goBench collects the values of one benchmark, by unit.
type goBench struct {
	name  string
	runs  int
	units map[string][]float64
}

// SummarizeGoBench reads `go test -bench` output (any -count; several
// packages) and returns a markdown table per package: the median of each
// metric (ns/op, pkt/s, MB/s, B/op, allocs/op and any custom unit) over
// the runs of each benchmark.
func SummarizeGoBench(r io.Reader) (string, error) {
	type pkgBench struct {
		name    string
		benches []*goBench
		byName  map[string]*goBench
		units   map[string]bool
	}
	var pkgs []*pkgBench
	cur := &pkgBench{name: "(no package)", byName: map[string]*goBench{}, units: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			cur = nil
			for _, x := range pkgs {
				if x.name == p {
					cur = x
				}
			}
			if cur == nil {
				cur = &pkgBench{name: p, byName: map[string]*goBench{}, units: map[string]bool{}}
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := reProcs.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		b := cur.byName[name]
		if b == nil {
			b = &goBench{name: name, units: map[string][]float64{}}
			cur.byName[name] = b
			cur.benches = append(cur.benches, b)
			if !slices.Contains(pkgs, cur) {
				pkgs = append(pkgs, cur)
			}
		}
		b.runs++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			b.units[f[i+1]] = append(b.units[f[i+1]], v)
			cur.units[f[i+1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if len(pkgs) == 0 {
		return "", errors.New("no benchmark results found")
	}
	var out strings.Builder
	for _, p := range pkgs {
		units := orderUnits(p.units)
		fmt.Fprintf(&out, "### %s\n\n| benchmark | runs |", p.name)
		for _, u := range units {
			fmt.Fprintf(&out, " %s |", u)
		}
		out.WriteString("\n|---|---|")
		for range units {
			out.WriteString("---|")
		}
		out.WriteString("\n")
		for _, b := range p.benches {
			fmt.Fprintf(&out, "| `%s` | %d |", b.name, b.runs)
			for _, u := range units {
				vs := b.units[u]
				if len(vs) == 0 {
					out.WriteString(" |")
					continue
				}
				fmt.Fprintf(&out, " %s |", fmtNum(NewStat(vs).Median))
			}
			out.WriteString("\n")
		}
		out.WriteString("\n")
	}
	return out.String(), nil
}

// orderUnits puts the usual units first, then the others sorted.
func orderUnits(set map[string]bool) []string {
	pref := []string{"ns/op", "pkt/s", "MB/s", "B/op", "allocs/op"}
	var out, rest []string
	for _, u := range pref {
		if set[u] {
			out = append(out, u)
		}
	}
	for u := range set {
		if !slices.Contains(pref, u) {
			rest = append(rest, u)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}
