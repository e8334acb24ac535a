// Package adm speaks the languages people already use to drive a virtual
// server:
//
//   - ipvsadm's (-A/-E/-D services, -a/-e/-d real servers, -L with
//     --stats, --rate, -c, --timeout, -Z, -C, -S/-R, --set);
//   - ipmasqadm portfw's, in the manual page's form (portfw -a -P tcp -L
//     VIP PORT -R RIP PORT -p PREF, -d, -f, -l) and in the virtual-server
//     handbook's (ipmasqadm -A VIP:PORT -R RIP:PORT, several -R making one
//     balanced service), with ipmasqadm's own messages (portfw.go);
//   - ipchains' forward chain: the handbook's two masquerade lines (-A
//     forward -j MASQ -s NET, and -d NET: masquerade what goes into NET),
//     -D, -F, -L in ipchains' layout and -P ACCEPT|DENY (ipchains.go).
//
// Parse turns a command line into a Command, resolving host and service
// names once, as ipvsadm resolves its arguments (a name stands for every
// address it has, narrowed to the families its real servers have); Apply
// turns a Command into a new nat.Config (pure: the caller installs it,
// and a command is applied whole or not at all); Write* format listings
// exactly as the tools print them, from the engine's listings, with names
// in place of numbers where the caller found some (View.Names). The
// control server in package gateway runs commands that `vsgate adm` sends
// it.
//
// What it must not do: touch the engine or any device itself, or keep
// state. Parse's only side effects are the resolver's lookups; everything
// else is a pure transformation.
package adm
