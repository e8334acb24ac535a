package gateway

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"
)

// FileCache keeps the files a configuration names (TLS certificates and
// keys) as they were last read, so that a gateway that may no longer read
// them itself (it runs unprivileged after setup) still takes them on a
// reload while they have not changed; one that changed must be sent by
// `vsgate adm reload`, which reads it with its caller's rights. The zero
// value is ready to use; it is safe for concurrent use.
type FileCache struct {
	mu    sync.Mutex
	files map[string]cachedFile
}

// cachedFile is a file's contents and what identified it then.
type cachedFile struct {
	data []byte
	id   fileID
}

// fileID tells a file's versions apart without reading it (stat needs no
// read permission).
type fileID struct {
	ino, size int64
	mod       time.Time
}

func statID(name string) (fileID, bool) {
	st, err := os.Stat(name)
	if err != nil {
		return fileID{}, false
	}
	id := fileID{size: st.Size(), mod: st.ModTime()}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		id.ino = int64(s.Ino)
	}
	return id, true
}

// Read reads name, or, when this process may not read it, its contents as
// last read if the file has not changed since.
func (c *FileCache) Read(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err == nil {
		c.Keep(name, b)
		return b, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		if id, ok := statID(name); ok {
			c.mu.Lock()
			f, found := c.files[name]
			c.mu.Unlock()
			if found && f.id == id {
				return f.data, nil
			}
		}
	}
	return nil, err
}

// Keep remembers data as name's contents (read by someone else: the
// caller of `vsgate adm reload`).
func (c *FileCache) Keep(name string, data []byte) {
	id, ok := statID(name)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = map[string]cachedFile{}
	}
	c.files[name] = cachedFile{data: data, id: id}
}
