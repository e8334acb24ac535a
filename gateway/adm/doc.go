// Package adm speaks the languages people already use to drive a virtual
// server:
//
//   - ipvsadm 1.31's (-A/-E/-D services, port 0 with -p, -o, -a/-e/-d
//     real servers with -x/-y, -L with --stats, --rate, --thresholds,
//     --persistent-conn, -c, --timeout, --daemon, -Z, -C, -S/-R, --set,
//     --start-daemon/--stop-daemon, -h, -v), read as ipvsadm reads it with popt:
//     the first option is the command, the command × option matrix and
//     every message and exit status are ipvsadm's (ipvsadm.go; ExitError
//     carries the status), -E/-e send a whole entry, and what IPVS has and
//     vsgate not is refused as ipvsadm's kernel refuses (exit 255);
//   - ipmasqadm portfw's, in the manual page's form (portfw -a -P tcp -L
//     VIP PORT -R RIP PORT -p PREF, -d, -f, -l) and in the virtual-server
//     handbook's (ipmasqadm -A VIP:PORT -R RIP:PORT, several -R making one
//     balanced service), with ipmasqadm's own messages (portfw.go);
//   - ipchains' forward chain: the handbook's two masquerade lines (-A
//     forward -j MASQ -s NET, and -d NET: masquerade what goes into NET),
//     -D, -F, -L in ipchains' layout and -P ACCEPT|DENY (ipchains.go).
//
// -S without -n names ports, and hosts only where the name stands for that
// address alone: vsgate's commands take a name for every address it has
// (ipvsadm's, the IPv4 one), so a name of two addresses would restore as
// two services.
//
// The version line of a listing, "IP Virtual Server version 1.2.1
// (size=N)", gives as N the flow table's capacity (table.size) where IPVS
// gives its connection hash table's size.
//
// Parse turns a command line into a Command, resolving host and service
// names once, as ipvsadm resolves its arguments (a name stands for every
// address it has, narrowed to the families its real servers have); Apply
// turns a Command into a new nat.Config (pure: the caller installs it,
// and a command is applied whole or not at all; Restore runs -R's lines
// one change at a time, as ipvsadm does, through the caller's install);
// Write* format listings
// exactly as the tools print them, from the engine's listings, with names
// in place of numbers where the caller found some (View.Names). The
// control server in package gateway runs commands that `vsgate adm` sends
// it.
//
// What it must not do: touch the engine or any device itself, or keep
// state. Parse's only side effects are the resolver's lookups; everything
// else is a pure transformation.
package adm
