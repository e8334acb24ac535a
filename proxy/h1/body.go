package h1

import (
	"bufio"
	"io"
	"strconv"
)

// CopyChunked passes a chunked body from src to dst, chunked: each chunk's
// size written again without extensions, its data copied as it arrives,
// the trailer fields passed on. dst is flushed whenever src has nothing
// more buffered, so a streaming body goes on as it comes. limit bounds
// the data bytes (negative: no bound); lim bounds the size and trailer
// lines. It returns the data bytes copied.
func CopyChunked(dst *bufio.Writer, src *bufio.Reader, limit int64, lim Limits) (int64, error) {
	n, err := eachChunk(src, limit, lim, func(size int64) (int64, error) {
		var hdr [24]byte
		b := strconv.AppendInt(hdr[:0], size, 16)
		if _, err := dst.Write(append(b, '\r', '\n')); err != nil {
			return 0, err
		}
		c, err := io.CopyN(dst, src, size)
		if err == nil {
			_, err = dst.WriteString("\r\n")
		}
		return c, err
	}, dst.Flush)
	if err != nil {
		return n, err
	}
	return n, copyTrailer(dst, src, lim)
}

// Dechunk copies a chunked body's data from src to dst, without its
// framing; the trailer fields are read and dropped. flush runs whenever
// src has nothing more buffered. Otherwise as CopyChunked.
func Dechunk(dst io.Writer, src *bufio.Reader, limit int64, lim Limits, flush func() error) (int64, error) {
	n, err := eachChunk(src, limit, lim, func(size int64) (int64, error) { return io.CopyN(dst, src, size) }, flush)
	if err != nil {
		return n, err
	}
	return n, copyTrailer(bufio.NewWriterSize(io.Discard, 16), src, lim)
}

// eachChunk reads chunks from src up to the last one (size 0), calling
// data for each chunk's bytes (which it must take from src) and flush
// when src has nothing more buffered; the trailer is left in src.
func eachChunk(src *bufio.Reader, limit int64, lim Limits, data func(size int64) (int64, error), flush func() error) (int64, error) {
	var n int64
	for {
		line, too, err := readLine(src, lim.FieldSize, false)
		if err != nil {
			return n, noEOF(err)
		}
		if too {
			return n, bad(400, "a chunk-size line too long")
		}
		size, ok := chunkSize(line)
		if !ok {
			return n, bad(400, "a malformed chunk size")
		}
		if limit >= 0 && n+size > limit {
			return n, ErrBodyTooLarge
		}
		if size == 0 {
			return n, nil
		}
		c, err := data(size)
		n += c
		if err != nil {
			return n, noEOF(err)
		}
		if line, too, err := readLine(src, 0, false); err != nil || too || len(line) != 0 {
			if err == nil {
				err = bad(400, "chunk data longer than its size")
			}
			return n, noEOF(err)
		}
		if src.Buffered() == 0 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
}

// copyTrailer passes the trailer section and the final CRLF on.
func copyTrailer(dst *bufio.Writer, src *bufio.Reader, lim Limits) error {
	if _, err := dst.WriteString("0\r\n"); err != nil {
		return err
	}
	for n := 0; ; n++ {
		line, too, err := readLine(src, lim.FieldSize, false)
		if err != nil {
			return noEOF(err)
		}
		if too || n > lim.Fields {
			return bad(400, "a trailer beyond the header limits")
		}
		if len(line) == 0 {
			_, err := dst.WriteString("\r\n")
			return err
		}
		name, _, ok := cutByte(line, ':')
		if !ok || !isToken(string(name)) {
			return bad(400, "a malformed trailer field")
		}
		dst.Write(line)
		if _, err := dst.WriteString("\r\n"); err != nil {
			return err
		}
	}
}

func cutByte(b []byte, c byte) (before, after []byte, ok bool) {
	for i := range b {
		if b[i] == c {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// chunkSize parses a chunk-size line's hex size; extensions are ignored.
func chunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line) && hexDigit(line[i]) >= 0; i++ {
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(hexDigit(line[i]))
	}
	if i == 0 {
		return 0, false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return n, i == len(line) || line[i] == ';'
}

// hexDigit is c's value as a hex digit, or -1.
func hexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// noEOF turns an EOF inside a body into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
