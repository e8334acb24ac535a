package cli

import (
	"fmt"
	"io"
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
}

// Usage prints the command list and the footer.
func (p Program) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [ARGS]\n\ncommands:\n", p.Name)
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %-6s %s\n", c.Name, c.Summary)
	}
	fmt.Fprint(w, p.Footer)
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
		p.Usage(stdout)
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
