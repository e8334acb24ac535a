// Command vsgate is the gateway's binary. Subcommands:
//
//	vsgate run -c FILE     run the gateway on its TUN device
//	vsgate check -c FILE   validate a configuration file without running it
//	vsgate adm ARGS        ipvsadm (and portfw, ipchains MASQ) for the running gateway
//	vsgate completion bash bash completion for vsgate and vsgate adm
//	vsgate version         the version, commit and Go version
//	vsgate help [config]   this list, or every key of the configuration file
//
// Each command is one entry in program below. The test bench (netlab,
// the demo, the end-to-end benchmarks) is cmd/vsgate-lab: this binary
// runs privileged and holds only what runs a gateway.
package main

import (
	"io"
	"os"

	"github.com/vsgate/vsgate/gateway/config"
	"github.com/vsgate/vsgate/internal/cli"
)

// program lists the subcommands in the order usage shows them.
func program() cli.Program {
	return cli.Program{Name: "vsgate", Footer: "\nvsgate COMMAND -h shows a command's help; vsgate help config, every key of the configuration file.\n",
		Topics: map[string]string{"config": config.KeysHelp}, Commands: []cli.Command{
			{Name: "run", Summary: "run the gateway: -c FILE", Run: runRun},
			{Name: "check", Summary: "validate a configuration file without running it: -c FILE", Run: runCheck},
			{Name: "adm", Summary: "change and list the running gateway, in ipvsadm's language", Run: runAdm},
			{Name: "completion", Summary: "bash completion for vsgate and vsgate adm: source <(vsgate completion bash)", Run: runCompletion},
			{Name: "version", Summary: "the version, the commit it was built from, the Go version (also --version)"},
			{Name: "help", Summary: "show this help"},
		}}
}

// run dispatches args (without the program name) and returns the exit
// status: 2 for usage errors.
func run(args []string, stdout, stderr io.Writer) int { return program().Run(args, stdout, stderr) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
