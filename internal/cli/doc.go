// Package cli is the subcommand dispatch that vsgate's two binaries
// (cmd/vsgate, cmd/vsgate-lab) share: a list of commands, their usage,
// and ipvsadm-like exit statuses (2 for a usage error).
//
// It must not hold any command's logic: a command is a function of its
// arguments and output streams.
package cli
