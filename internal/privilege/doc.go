// Package privilege takes a process that started as root down to an
// unprivileged user with a few capabilities, the way nginx and HAProxy
// give up root once their sockets are open.
//
// After Drop the process runs as the given user and group (no
// supplementary groups) and holds only the capabilities it asked to keep,
// in its permitted, effective, inheritable and ambient sets. The bounding
// set is empty, so nothing the process executes can gain any other
// capability; the securebits are locked so that neither uid 0 nor a
// setuid program means privilege again; NO_NEW_PRIVS is set. Every
// thread of the Go runtime is changed at once (syscall.AllThreadsSyscall),
// which Go allows only in binaries built without cgo.
//
// It must not be used for anything but that one irreversible step: there
// is no way back, and the caller must have opened every file and socket
// that needs root before calling Drop.
package privilege
