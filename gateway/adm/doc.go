// Package adm speaks the languages people already use to drive a virtual
// server: ipvsadm's (-A/-E/-D services, -a/-e/-d real servers, -L with
// --stats, --rate, -c, --timeout, -Z, -C, -S/-R, --set), ipmasqadm
// portfw's (-a -P tcp -L VIP PORT -R RIP PORT -p PREF, -d, -f, -l) and
// ipchains' masquerade rule (-A forward -j MASQ -s NET).
//
// Parse turns a command line into a Command; Apply turns a Command into a
// new nat.Config (pure: the caller installs it); Write* format listings
// exactly as ipvsadm prints them, from the engine's listings. The control
// server in package gateway runs commands that `vsgate adm` sends it.
//
// What it must not do: touch the engine or any device itself, or keep
// state: every function is a pure transformation.
package adm
