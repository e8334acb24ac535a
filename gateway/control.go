package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The control API: a unix socket (mode 0600) that takes one request per
// connection, a JSON object with the command line and its standard input,
// and answers with the output and an exit status. `vsgate adm` is its
// client. The protocol is deliberately tiny: the commands themselves are
// ipvsadm's, so there is nothing else to version.

// Request is what `vsgate adm` sends.
type Request struct {
	Args  []string `json:"args"`
	Stdin string   `json:"stdin,omitempty"`
}

// Response is what the gateway answers.
type Response struct {
	Output string `json:"output"`
	Error  string `json:"error,omitempty"`
	Status int    `json:"status"`
}

// Handler runs one command.
type Handler func(ctx context.Context, req Request) Response

// maxRequest bounds a request (a restore script included).
const maxRequest = 16 << 20

// ControlServer serves the control socket. Create it with ListenControl;
// Close stops it. Safe for concurrent use.
type ControlServer struct {
	ln   net.Listener
	path string
	wg   sync.WaitGroup
}

// ListenControl creates the socket at path (its directory too, mode 0700)
// and serves requests with h until Close. A stale socket file (no one
// listening) is replaced; a live one is an error.
func ListenControl(path string, h Handler) (*ControlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
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
	s := &ControlServer{ln: ln, path: path}
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
			if err := json.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req); err != nil {
				_ = json.NewEncoder(c).Encode(Response{Error: "bad request: " + err.Error(), Status: 2})
				return
			}
			_ = json.NewEncoder(c).Encode(h(context.Background(), req))
		}()
	}
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
