package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalid is wrapped by every *Error: the configuration is not valid.
// Test with errors.Is(err, config.ErrInvalid). Errors reading the file
// (Load) do not wrap it.
var ErrInvalid = errors.New("invalid configuration")

// Error is one problem in a configuration: where it is, what is wrong and
// how to fix it. Error() reads
//
//	vsgate.yaml:12: backend 198.18.2.11:8080: weight 70000 is out of range: use 0..65535
//
// Error is a plain value; Parse and Validate return them in an Errors.
type Error struct {
	File string // the file name given to Parse; "" for a Config built in code
	Line int    // 1-based line of the offending node; 0 if not from a file
	Path string // where in the schema, such as "services[0].backends[2].weight"
	Msg  string // what is wrong, naming the thing
	Fix  string // what to do about it
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Line > 0 && e.File != "":
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	case e.Path != "":
		fmt.Fprintf(&b, "%s: ", e.Path)
	}
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString(": ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Errors is every problem found in one configuration, in line order (path
// order for a Config built in code). It is never empty when returned as an
// error. Error() gives one problem per line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so that errors.Is and errors.As see each.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// report collects errors, at most one per path (the first one found, which
// is the most basic: a value that does not parse is not checked further).
type report struct {
	errs Errors
	seen map[string]bool
}

// fail records a problem at path. msg says what is wrong, fix what to do.
func (r *report) fail(path, msg, fix string) {
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if r.seen[path] {
		return
	}
	r.seen[path] = true
	r.errs = append(r.errs, &Error{Path: path, Msg: msg, Fix: fix})
}

// failAt records a problem at path that stands at line of file (a file
// the configuration names, or a line inside one of its values).
func (r *report) failAt(path, file string, line int, msg, fix string) {
	if r.failed(path) {
		return
	}
	r.fail(path, msg, fix)
	e := r.errs[len(r.errs)-1]
	e.File, e.Line = file, line
}

// failed reports whether a problem was recorded at path.
func (r *report) failed(path string) bool { return r.seen[path] }

// failedUnder reports whether a problem was recorded at path or below it
// (path.key, path[i]).
func (r *report) failedUnder(path string) bool {
	for p := range r.seen {
		if p == path || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
			return true
		}
	}
	return false
}

// err returns the problems sorted by line, then path, or nil.
func (r *report) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(r.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), comparePath(a.Path, b.Path))
	})
	return r.errs
}

// comparePath orders schema paths so that services[2] comes before
// services[10].
func comparePath(a, b string) int {
	for a != "" && b != "" {
		ia := strings.IndexAny(a, "0123456789")
		ib := strings.IndexAny(b, "0123456789")
		if ia != ib || ia < 0 || a[:ia] != b[:ib] {
			return strings.Compare(a, b)
		}
		a, b = a[ia:], b[ib:]
		na, nb := digits(a), digits(b)
		if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb)); c != 0 {
			return c
		}
		a, b = a[len(na):], b[len(nb):]
	}
	return strings.Compare(a, b)
}

func digits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
