package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The file's schema. Every leaf is a string: the YAML decoder turns any
// scalar into its text, and convert parses the text itself, so that a bad
// value is reported with its line and a fix instead of stopping the
// decoder. The yaml tags are the keys of the file (see doc.go).
type (
	fileConfig struct {
		Device     fileDevice    `yaml:"device"`
		Table      fileTable     `yaml:"table"`
		Timeouts   fileTimeouts  `yaml:"timeouts"`
		Default    string        `yaml:"default"`
		Removed    string        `yaml:"removed_backends"`
		TCPWindow  string        `yaml:"tcp_window_check"`
		Services   []fileService `yaml:"services"`
		Masquerade []fileMasq    `yaml:"masquerade"`
		Marks      []fileMark    `yaml:"marks"`
		MasqTo     string        `yaml:"masquerade_to"`
		MasqInside []string      `yaml:"masquerade_inside"`
		FullNAT    fileFullNAT   `yaml:"fullnat"`
		Control    fileControl   `yaml:"control"`
		User       string        `yaml:"user"`
		Seccomp    string        `yaml:"seccomp"`
		Pcap       filePcap      `yaml:"pcap"`
		Metrics    fileMetrics   `yaml:"metrics"`
		Log        fileLog       `yaml:"log"`
		BGP        fileBGP       `yaml:"bgp"`
		Sync       fileSync      `yaml:"sync"`
		L7         fileL7Stack   `yaml:"l7"`
	}
	fileL7Stack struct {
		Stack          string `yaml:"stack"`
		MaxConnections string `yaml:"max_connections"`
	}
	fileDevice struct {
		Type       string   `yaml:"type"`
		Name       string   `yaml:"name"`
		Queues     string   `yaml:"queues"`
		Offloads   string   `yaml:"offloads"`
		Interfaces []string `yaml:"interfaces"`
		Addresses  []string `yaml:"addresses"`
	}
	fileTable struct {
		Size      string        `yaml:"size"`
		PerSource filePerSource `yaml:"per_source"`
		SynProxy  fileSynProxy  `yaml:"syn_proxy"`
	}
	fileSynProxy struct {
		HalfOpen string `yaml:"half_open"`
		Fill     string `yaml:"fill"`
	}
	filePerSource struct {
		V4Prefix string `yaml:"v4_prefix"`
		V6Prefix string `yaml:"v6_prefix"`
		HalfOpen string `yaml:"half_open"`
		Flows    string `yaml:"flows"`
	}
	fileTimeouts struct {
		TCP          string `yaml:"tcp"`
		TCPFin       string `yaml:"tcpfin"`
		UDP          string `yaml:"udp"`
		ICMP         string `yaml:"icmp"`
		TCPSynSent   string `yaml:"tcp_syn_sent"`
		TCPSynRecv   string `yaml:"tcp_syn_recv"`
		TCPTimeWait  string `yaml:"tcp_time_wait"`
		TCPClose     string `yaml:"tcp_close"`
		TCPCloseWait string `yaml:"tcp_close_wait"`
		TCPLastAck   string `yaml:"tcp_last_ack"`
	}
	fileService struct {
		Name               string        `yaml:"name"`
		Proto              string        `yaml:"proto"`
		VIP                string        `yaml:"vip"`
		Fwmark             string        `yaml:"fwmark"`
		Family             string        `yaml:"family"`
		Scheduler          string        `yaml:"scheduler"`
		SchedulerFlags     []string      `yaml:"scheduler_flags"`
		SchedulerTableSize string        `yaml:"scheduler_table_size"`
		Mode               string        `yaml:"mode"`
		Persistence        string        `yaml:"persistence"`
		PersistenceNetmask string        `yaml:"persistence_netmask"`
		Sloppy             string        `yaml:"sloppy"`
		TCPWindow          string        `yaml:"tcp_window_check"`
		SynProxy           string        `yaml:"syn_proxy"`
		OnePacket          string        `yaml:"one_packet"`
		Announce           string        `yaml:"announce"`
		Health             fileHealth    `yaml:"health"`
		FlowLog            fileFlowLog   `yaml:"flow_log"`
		Backends           []fileBackend `yaml:"backends"`
		L7                 fileL7        `yaml:"l7"`
	}
	fileMark struct {
		Mark  string `yaml:"mark"`
		Dst   string `yaml:"dst"`
		Proto string `yaml:"proto"`
		Ports string `yaml:"ports"`
	}
	fileFlowLog struct {
		Every string `yaml:"every"`
		Rate  string `yaml:"rate"`
	}
	fileHealth struct {
		Type     string `yaml:"type"`
		Interval string `yaml:"interval"`
		Timeout  string `yaml:"timeout"`
		Rise     string `yaml:"rise"`
		Fall     string `yaml:"fall"`
		Port     string `yaml:"port"`
		Path     string `yaml:"path"`
		Expect   string `yaml:"expect"`
	}
	fileBackend struct {
		Addr       string `yaml:"addr"`
		Weight     string `yaml:"weight"`
		UThreshold string `yaml:"u_threshold"`
		LThreshold string `yaml:"l_threshold"`
	}
	// fileL7 is an HTTP service's Apache directives, inline or in a
	// file.
	fileL7 struct {
		Directives string `yaml:"directives"`
		File       string `yaml:"file"`
	}
	fileMasq struct {
		From     string `yaml:"from"`
		Into     string `yaml:"into"`
		To       string `yaml:"to"`
		Ports    string `yaml:"ports"`
		IPChains string `yaml:"ipchains"`
	}
	fileFullNAT struct {
		Pool     []string `yaml:"pool"`
		Ports    string   `yaml:"ports"`
		Takeover []string `yaml:"takeover"`
	}
	fileControl struct {
		Socket string `yaml:"socket"`
	}
	filePcap struct {
		Dir string `yaml:"dir"`
	}
	fileMetrics struct {
		Listen string `yaml:"listen"`
		Public string `yaml:"public"`
		Pprof  string `yaml:"pprof"`
	}
	fileLog struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	}
)

// file is a decoded configuration file with the line of every key and
// list item, by schema path ("services[0].backends[2].weight").
type file struct {
	name  string
	raw   fileConfig
	lines map[string]int
	alias []pathAlias // entries resolveNames made, in the order it made them
}

// canon returns the path of the file's own entry for a path of an entry
// resolveNames made (a later alias may point into an earlier one's copy,
// so they are undone newest first).
func (f *file) canon(path string) string {
	for i := len(f.alias) - 1; i >= 0; i-- {
		a := f.alias[i]
		if rest, ok := strings.CutPrefix(path, a.copy); ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
			path = a.orig + rest
		}
	}
	return path
}

// line returns the line of path, or of its nearest ancestor present in the
// file (a missing key is reported where its mapping starts), or 0.
func (f *file) line(path string) int {
	path = f.canon(path)
	for {
		if l, ok := f.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// has reports whether path is present in the file.
func (f *file) has(path string) bool {
	_, ok := f.lines[f.canon(path)]
	return ok
}

// readFile parses data, checks its shape against the schema and decodes
// it. Unknown keys come back in the report, with the line of each; other
// shape problems (YAML syntax, a list where a value belongs) are returned
// as the error, all of them, since the values cannot be decoded.
func readFile(data []byte, name string) (*file, *report, error) {
	astFile, err := parseYAML(data)
	if err != nil {
		return nil, nil, Errors{yamlError(err, data, name)}
	}
	f := &file{name: name, lines: map[string]int{}}
	var body ast.Node
	for _, d := range astFile.Docs {
		if d.Body == nil {
			continue
		}
		if body != nil {
			return nil, nil, Errors{{File: name, Line: nodeLine(d.Body), Msg: "a second YAML document",
				Fix: "a config file holds one document: remove the '---' and what follows"}}
		}
		body = d.Body
	}
	s := &shape{lines: f.lines}
	if body == nil {
		return f, &s.r, nil // empty: every default
	}
	s.walk(body, reflect.TypeFor[fileConfig](), "")
	if s.kindErrors {
		return nil, nil, s.errors(f)
	}
	opts := []yaml.DecodeOption{yaml.Strict()}
	if len(s.r.errs) > 0 {
		opts = nil // the unknown keys are reported already; decode the rest
	}
	if err := decodeYAML(data, &f.raw, opts); err != nil {
		// The shape check missed it: an alias to the wrong kind of node,
		// a tag, a merge that repeats a key.
		return nil, nil, append(s.errors(f), yamlError(err, data, name))
	}
	return f, &s.r, nil
}

// errPanic is what a panic in the YAML library becomes: a config file must
// never bring the gateway down.
var errPanic = errors.New("the YAML parser failed on this file")

func parseYAML(data []byte) (f *ast.File, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("%w (%v)", errPanic, p)
		}
	}()
	return parser.ParseBytes(data, 0)
}

func decodeYAML(data []byte, v *fileConfig, opts []yaml.DecodeOption) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w (%v)", errPanic, p)
		}
	}()
	return yaml.UnmarshalWithOptions(data, v, opts...)
}

// shape checks a YAML tree against the schema's Go types and records the
// line of every key and list item.
type shape struct {
	lines      map[string]int
	r          report
	kindErrors bool
}

// errors returns what the shape check found, with file and line set.
func (s *shape) errors(f *file) Errors {
	for _, e := range s.r.errs {
		if e.File == "" {
			e.File, e.Line = f.name, f.line(e.Path)
		}
	}
	s.r.err() // sort
	return s.r.errs
}

// unwrap removes anchors: what they mark is what counts.
func unwrap(n ast.Node) ast.Node {
	for {
		a, ok := n.(*ast.AnchorNode)
		if !ok {
			return n
		}
		n = a.Value
	}
}

func nodeLine(n ast.Node) int {
	if n == nil || n.GetToken() == nil {
		return 0
	}
	return n.GetToken().Position.Line
}

// walk checks node n, found at path, against type t.
func (s *shape) walk(n ast.Node, t reflect.Type, path string) {
	n = unwrap(n)
	switch n.(type) {
	case nil, *ast.NullNode:
		return // absent: defaults
	case *ast.AliasNode:
		return // the decoder resolves and checks it
	case *ast.TagNode:
		// Tags (!!str, !custom) mean nothing in this schema, and the
		// decoder mishandles some of them.
		s.kind(path, fmt.Sprintf("%s has a YAML tag (%s)", keyOf(path), n.GetToken().Value), "remove the tag")
		return
	}
	key := keyOf(path)
	if key == "" {
		key = "the file"
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := n.(ast.MapNode)
		if !ok {
			s.kind(path, fmt.Sprintf("%s is %s", key, describe(n)),
				fmt.Sprintf("write %s: followed by indented key: value lines (see %s in doc.go)", key, key))
			return
		}
		it := m.MapRange()
		for it.Next() {
			k := it.Key()
			if k.IsMergeKey() {
				continue
			}
			name := keyName(k)
			p := name
			if path != "" {
				p = path + "." + name
			}
			s.lines[p] = nodeLine(k)
			f, ok := field(t, name)
			if !ok && !keyLike(name) {
				// Not a key at all: the file may be anything vsgate was
				// pointed at (as root), so its text is not repeated.
				s.r.fail(p, "not a configuration key (the line is not shown)", suggest("", t, path))
				continue
			}
			if !ok {
				s.r.fail(p, fmt.Sprintf("unknown key %q", name), suggest(name, t, path))
				continue
			}
			s.walk(it.Value(), f, p)
		}
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			s.kind(path, fmt.Sprintf("%s is %s, not a list", key, describe(n)),
				fmt.Sprintf("write a list, such as %s: [a, b], or one '- item' line per element", key))
			return
		}
		for i, v := range seq.Values {
			p := fmt.Sprintf("%s[%d]", path, i)
			s.lines[p] = nodeLine(v)
			s.walk(v, t.Elem(), p)
		}
	case reflect.String:
		// Where the text itself begins, for a value that is a text of its
		// own (Apache directives): a block scalar's on the line after
		// its '|' or '>'.
		s.lines[path+textLine] = nodeLine(n)
		if _, ok := n.(*ast.LiteralNode); ok {
			s.lines[path+textLine]++
		}
		switch n.(type) {
		case ast.MapNode, *ast.SequenceNode:
			s.kind(path, fmt.Sprintf("%s is %s, not a single value", key, describe(n)),
				fmt.Sprintf("write %s: VALUE on one line (quote a value that starts with '[' or '{')", key))
		}
	}
}

// textLine suffixes a string value's path in file.lines: the line its
// text begins on.
const textLine = "#text"

func (s *shape) kind(path, msg, fix string) {
	s.kindErrors = true
	s.r.fail(path, msg, fix)
}

func describe(n ast.Node) string {
	switch n.(type) {
	case ast.MapNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	}
	return "a single value"
}

func keyName(k ast.MapKeyNode) string {
	if s, ok := k.(*ast.StringNode); ok {
		return s.Value
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return k.String()
}

// field returns the type of t's field whose yaml tag is name.
func field(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlKey(f) == name {
			return f.Type, true
		}
	}
	return nil, false
}

func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return k
}

// keyLike reports whether an unknown key looks like one, worth repeating
// in the error: a letter, then letters, digits, '_' and '-', at most 40.
func keyLike(k string) bool {
	if k == "" || len(k) > 40 {
		return false
	}
	for i, c := range k {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// suggest is the fix for an unknown key: the closest known key if one is
// close, else the list of keys allowed there.
func suggest(name string, t reflect.Type, path string) string {
	var keys []string
	for i := range t.NumField() {
		keys = append(keys, yamlKey(t.Field(i)))
	}
	// A typo is a few edits away; allow more in longer keys.
	best, bestD := "", 2+len(name)/6
	for _, k := range keys {
		if name == "" {
			break
		}
		if d := editDistance(strings.ToLower(name), k); d <= bestD && (best == "" || d < editDistance(strings.ToLower(name), best)) {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	return fmt.Sprintf("remove it; the keys %s are %s", where, strings.Join(keys, ", "))
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unquotedV6 matches an unquoted "[v6]:port" value, which YAML reads as
// the start of a list.
var unquotedV6 = regexp.MustCompile(`(^|[:\s-])\s*\[[0-9A-Fa-f:.]*\]:[0-9]`)

// yamlError turns a YAML library error into an *Error with its line.
func yamlError(err error, data []byte, name string) *Error {
	e := &Error{File: name, Msg: "YAML: " + strings.Join(strings.Fields(err.Error()), " "),
		Fix: "check the indentation and quoting on this line and the one before"}
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return e
	}
	msg := strings.Join(strings.Fields(ye.GetMessage()), " ")
	if tk := ye.GetToken(); tk != nil {
		e.Line = tk.Position.Line
	}
	e.Msg = "YAML: " + msg
	var unknown *yaml.UnknownFieldError
	switch {
	case strings.Contains(msg, "already defined") || strings.Contains(msg, "duplicate key"):
		e.Fix = "each key may appear once in a mapping (also after a merge with <<): remove one"
	case errors.As(err, &unknown):
		e.Fix = "remove it or check its spelling against doc.go"
	default:
		lines := strings.Split(string(data), "\n")
		hi := min(max(e.Line, 0), len(lines))
		for _, l := range lines[max(0, hi-2):hi] { // this line and the one before
			if unquotedV6.MatchString(l) {
				e.Fix = `quote an IPv6 address with a port: "[2001:db8::10]:80"`
			}
		}
		if strings.Contains(msg, "tab") {
			e.Fix = "indent with spaces, not tabs"
		}
	}
	return e
}
