package config

import _ "embed"

// KeysHelp is every key of the file, what it means and its default
// (keys.txt; "vsgate help config" prints it).
//
//go:embed keys.txt
var KeysHelp string
