package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/vsgate/vsgate/sched"
)

// completionBash completes vsgate's commands, -c FILE, and vsgate adm in
// ipvsadm's language: its commands and options, schedulers after -s,
// forwarding switches, the other tools' words, and the adm words of vsgate
// (reload, drops, bgp, pcap). %s are the commands and the schedulers.
const completionBash = `# bash completion for vsgate: source <(vsgate completion bash)
_vsgate() {
	local cur prev words cword
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "%s --version" -- "$cur"))
		return
	fi
	case ${COMP_WORDS[1]} in
	run|check)
		case $prev in
		-c) COMPREPLY=($(compgen -f -- "$cur")) ;;
		*) COMPREPLY=($(compgen -W "-c" -- "$cur")) ;;
		esac ;;
	help)
		COMPREPLY=($(compgen -W "config" -- "$cur")) ;;
	completion)
		COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
	adm)
		case $prev in
		-s|--scheduler) COMPREPLY=($(compgen -W "%s" -- "$cur")); return ;;
		-b|--sched-flags) COMPREPLY=($(compgen -W "sh-fallback sh-port flag-1 flag-2 flag-3" -- "$cur")); return ;;
		--start-daemon|--stop-daemon) COMPREPLY=($(compgen -W "master backup" -- "$cur")); return ;;
		--socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
		pcap) COMPREPLY=($(compgen -W "start stop" -- "$cur")); return ;;
		-t|-u|-r|-f|-w|-x|-y|-p|-M|--set) return ;;
		esac
		if [ "$COMP_CWORD" -eq 2 ] || { [ "$COMP_CWORD" -eq 4 ] && [ "${COMP_WORDS[2]}" = --socket ]; }; then
			COMPREPLY=($(compgen -W "-A -E -D -C -R -S -a -e -d -L -l -Z --set --start-daemon --stop-daemon -h -v ipvsadm ipmasqadm ipchains iptables ip6tables reload drops bgp pcap help --socket" -- "$cur"))
			return
		fi
		COMPREPLY=($(compgen -W "-t -u -f -6 -s -p -M -o -b -r -g -m --fullnat -w -x -y -n -c --stats --rate --thresholds --persistent-conn --tun-info --timeout --daemon --exact --sort --nosort --syncid --mcast-interface" -- "$cur")) ;;
	esac
}
complete -F _vsgate vsgate
`

// runCompletion is vsgate completion bash.
func runCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "bash" {
		fmt.Fprintln(stderr, "usage: vsgate completion bash   (then: source <(vsgate completion bash))")
		return 2
	}
	var cmds []string
	for _, c := range program().Commands {
		cmds = append(cmds, c.Name)
	}
	fmt.Fprintf(stdout, completionBash, strings.Join(cmds, " "), strings.Join(sched.Names(), " "))
	return 0
}
