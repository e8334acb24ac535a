package cli

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

// Command is one subcommand: Run gets the arguments after its name and
// returns the exit status. A command with no Run is listed (help).
type Command struct {
	Name    string
	Summary string
	Run     func(args []string, stdout, stderr io.Writer) int
}

// Program is a binary's commands.
type Program struct {
	Name     string    // the binary, as usage names it
	Commands []Command // in the order usage lists them
	Footer   string    // printed after the list
	// Topics are what "help TOPIC" prints, by topic.
	Topics map[string]string
}

// Usage prints the command list and the footer.
func (p Program) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [ARGS]\n\ncommands:\n", p.Name)
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %-6s %s\n", c.Name, c.Summary)
	}
	fmt.Fprint(w, p.Footer)
}

// Version is the binary's version line: its module version, the commit it
// was built from (with "+changes" when the tree had uncommitted changes)
// and when, and the Go version and platform, as the build recorded them.
func Version(name string) string {
	version, commit, when, dirty := "(devel)", "unknown", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value[:min(len(s.Value), 12)]
			case "vcs.time":
				when = " " + s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += "+changes"
	}
	return fmt.Sprintf("%s %s commit %s%s %s %s/%s", name, version, commit, when, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Run dispatches args (without the program name) and returns the exit
// status: 0 for help, 2 for a missing or unknown command.
func (p Program) Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		p.Usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			text, ok := p.Topics[args[1]]
			if !ok {
				fmt.Fprintf(stderr, "%s help: no topic %q (topics: %s)\n", p.Name, args[1], strings.Join(slices.Sorted(maps.Keys(p.Topics)), ", "))
				return 2
			}
			fmt.Fprint(stdout, text)
			return 0
		}
		p.Usage(stdout)
		return 0
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, Version(p.Name))
		return 0
	}
	for _, c := range p.Commands {
		if c.Name == args[0] && c.Run != nil {
			return c.Run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", p.Name, args[0])
	p.Usage(stderr)
	return 2
}
