package bench

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

// clkTck is USER_HZ, the unit of /proc CPU times. It is 100 on every
// Linux architecture Go supports (the kernel fixes it for the ABI).
const clkTck = 100

// procStat is what the benchmark reads from /proc/<pid>/stat.
type procStat struct {
	ppid int
	cpu  float64 // utime + stime, seconds
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// parseStat parses the text of /proc/<pid>/stat. The command name (field
// 2) may hold spaces and parentheses: fields are counted after the last
// ')'.
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, errors.New("bench: short /proc stat")
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseFloat(f[11], 64)
	st, err3 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, err
	}
	return procStat{ppid: ppid, cpu: (ut + st) / clkTck}, nil
}

// allStats reads the stat of every process.
func allStats() map[int]procStat {
	out := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			out[pid] = st
		}
	}
	return out
}

// descendants returns the PIDs of root's children, grandchildren, ...
func descendants(root int) []int {
	return descendantsOf(root, allStats())
}

// descendantsOf walks the process tree in stats.
func descendantsOf(root int, stats map[int]procStat) []int {
	kids := map[int][]int{}
	for pid, st := range stats {
		kids[st.ppid] = append(kids[st.ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			out = append(out, k)
			queue = append(queue, k)
		}
	}
	return out
}

// treeCPU returns the CPU seconds (user + system, all threads) used so
// far by the processes roots and their descendants.
func treeCPU(roots []int) float64 {
	stats := allStats()
	var sum float64
	for _, r := range roots {
		sum += stats[r].cpu
		for _, k := range descendantsOf(r, stats) {
			sum += stats[k].cpu
		}
	}
	return sum
}

// machineBusy returns the busy CPU seconds of the whole machine so far:
// the first line of /proc/stat, everything but idle and iowait.
func machineBusy() (float64, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, errors.New("bench: empty /proc/stat")
	}
	return parseCPULine(sc.Text())
}

// parseCPULine parses "cpu  user nice system idle iowait irq softirq
// steal ..." into busy seconds.
func parseCPULine(line string) (float64, error) {
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("bench: malformed /proc/stat cpu line")
	}
	var busy float64
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already in user
			break
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, err
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += v
	}
	return busy / clkTck, nil
}
