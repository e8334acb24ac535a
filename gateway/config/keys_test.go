package config

import (
	"reflect"
	"regexp"
	"testing"
)

// TestKeysHelp: every key the file may hold (the yaml tags of the file's
// structs, at any depth) is explained in keys.txt.
func TestKeysHelp(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var keys []string
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Slice || ty.Kind() == reflect.Pointer {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			if tag := f.Tag.Get("yaml"); tag != "" && tag != "-" {
				keys = append(keys, tag)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[fileConfig]())
	if len(keys) < 50 {
		t.Fatalf("found only %d keys: the walk is broken", len(keys))
	}
	for _, k := range keys {
		if !regexp.MustCompile(`(^|[\s{-])` + regexp.QuoteMeta(k) + `:`).MatchString(KeysHelp) {
			t.Errorf("keys.txt does not explain %q", k)
		}
	}
}
