package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The control API: a unix socket (mode 0600) that takes one request per
// connection, a JSON object with the command line and its standard input,
// and answers with the output and an exit status. `vsgate adm` is its
// client. The protocol is deliberately tiny: the commands themselves are
// ipvsadm's, so there is nothing else to version.
//
// Only root, and the user that started the gateway, may use it: the
// socket file belongs to the user the gateway runs as after setup (so it
// can remove it at exit), and that user — nobody by default — is shared
// with other daemons, so the peer's credentials (SO_PEERCRED) decide.

// Request is what `vsgate adm` sends.
type Request struct {
	Args  []string `json:"args"`
	Stdin string   `json:"stdin,omitempty"`
	// Files are contents of files the configuration names (reload), by
	// path, that the gateway asked for (Response.ReadFile).
	Files map[string]string `json:"files,omitempty"`
}

// Response is what the gateway answers.
type Response struct {
	Output string `json:"output"`
	Error  string `json:"error,omitempty"`
	Status int    `json:"status"`
	// ReadFile asks the client to send this file's contents as the
	// request's Stdin: the gateway's user may not read it (reload).
	ReadFile string `json:"read_file,omitempty"`
	// ReadNamed asks the client to send, in the request's Files, this
	// file the configuration names (a TLS key) that the gateway's user
	// may not read.
	ReadNamed string `json:"read_named,omitempty"`
}

// Handler runs one command.
type Handler func(ctx context.Context, req Request) Response

// maxRequest bounds a request (a restore script included).
const maxRequest = 16 << 20

// ControlServer serves the control socket. Create it with ListenControl;
// Close stops it. Safe for concurrent use.
type ControlServer struct {
	ln    net.Listener
	path  string
	admin int // the uid besides root that may send requests
	wg    sync.WaitGroup
}

// ListenControl creates the socket at path (its directory too, mode 0700,
// if missing) for owner (nil: the current user) and serves requests with
// h until Close. A stale socket file (no one listening) is replaced; a
// live one is an error.
func ListenControl(path string, owner *Owner, h Handler) (*ControlServer, error) {
	if err := makeOwnedDir(filepath.Dir(path), owner); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another vsgate is listening on it", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if owner != nil {
		if err := os.Lchown(path, owner.UID, owner.GID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	s := &ControlServer{ln: ln, path: path, admin: os.Getuid()}
	s.wg.Add(1)
	go s.serve(h)
	return s, nil
}

func (s *ControlServer) serve(h Handler) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			var req Request
			err := json.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req)
			// The request is read before a refusal, so that the client
			// gets the answer rather than a broken pipe.
			if uid, perr := peerUID(c); perr != nil || uid != 0 && uid != s.admin {
				_ = json.NewEncoder(c).Encode(Response{Error: "Permission denied (you must be root)", Status: 2})
				return
			}
			if err != nil {
				_ = json.NewEncoder(c).Encode(Response{Error: "bad request: " + err.Error(), Status: 2})
				return
			}
			_ = json.NewEncoder(c).Encode(h(context.Background(), req))
		}()
	}
}

// peerUID returns the user of the process at the other end of c.
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// makeOwnedDir creates dir, mode 0700 (missing parents 0755), for owner
// (nil: the current user). A directory that is there already is left as
// it is: vsgate never takes over one it did not make.
func makeOwnedDir(dir string, owner *Owner) error {
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	if owner != nil {
		return os.Chown(dir, owner.UID, owner.GID)
	}
	return nil
}

// Close stops serving, waits for requests in progress and removes the
// socket.
func (s *ControlServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
	return err
}

// ErrNoGateway means nothing listens on the control socket.
var ErrNoGateway = errors.New("no vsgate listening")

// Call sends one request to the gateway at path.
func Call(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if errors.Is(err, fs.ErrPermission) {
		return Response{}, fmt.Errorf("%s: Permission denied (you must be root)", path)
	}
	if err != nil {
		return Response{}, fmt.Errorf("%w on %s (is `vsgate run` up? is -s/--socket right?): %v", ErrNoGateway, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, err
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	return resp, nil
}
