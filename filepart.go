package main

import (
	"bufio"
	"bytes"
	"io"
)

// The file part of a form is most of the bytes the server handles. mime/multipart reads it
// through its own 4 KiB buffer: a boundary scan, two copies and a chain of calls per 4 KiB.
// Once multipart has read the file part's headers, the file is read here instead, straight
// from the handler's large buffer, with multipart's own rules for where the part ends.

// preambleTap sits between multipart's reader and the handler's buffer. Until the file part,
// it hands multipart one byte per Read and keeps them, so that when multipart returns the file
// part nothing past its headers sits unseen in multipart's buffer.
type preambleTap struct {
	br  *bufio.Reader
	raw []byte // what multipart was given; bounded by preambleLimit
	off bool   // past the preamble: plain reads
}

func (t *preambleTap) Read(p []byte) (int, error) {
	if t.off || len(p) == 0 {
		return t.br.Read(p)
	}
	c, err := t.br.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	t.raw = append(t.raw, c)
	return 1, nil
}

// fileReader returns a reader of the file part's content straight from the large buffer, or
// nil when multipart must read it itself: a form in bare-LF mode, a Content-Transfer-Encoding
// on the part, or any doubt that multipart's buffer is empty. Either way the tap turns to
// plain reads.
func (t *preambleTap) fileReader(boundary string) io.Reader {
	t.off = true
	raw := t.raw
	t.raw = nil
	dash := []byte("--" + boundary)
	// The first delimiter line must end in CRLF (else multipart switches to bare LF).
	first := bytes.Index(raw, dash)
	if first < 0 || (first > 0 && raw[first-1] != '\n') {
		return nil
	}
	rest := bytes.TrimLeft(raw[first+len(dash):], " \t")
	if !bytes.HasPrefix(rest, []byte("\r\n")) {
		return nil
	}
	// The file part's headers run from its delimiter line to the first blank line, which must
	// be the last bytes multipart was given.
	last := bytes.LastIndex(raw, dash)
	head := raw[last:]
	end := bytes.Index(head, []byte("\r\n\r\n"))
	if end < 0 || end+4 != len(head) {
		return nil
	}
	if bytes.Contains(bytes.ToLower(head), []byte("content-transfer-encoding")) {
		return nil
	}
	return &filePart{br: t.br, dashBoundary: dash, nlDashBoundary: []byte("\r\n--" + boundary)}
}

// filePart reads one part's content up to its closing delimiter, as mime/multipart's
// partReader does (same scan, same errors), over a larger buffer.
type filePart struct {
	br             *bufio.Reader
	dashBoundary   []byte // "--boundary"
	nlDashBoundary []byte // "\r\n--boundary"
	total          int64  // bytes returned
	n              int    // bytes in br known to be content
	err            error  // what follows those n bytes: EOF at the delimiter, or a read error
	readErr        error  // the read error seen at the end of br's buffer
}

func (p *filePart) Read(d []byte) (int, error) {
	if ok, _ := p.scan(nil); !ok {
		return 0, p.err
	}
	n := min(len(d), p.n)
	n, _ = p.br.Read(d[:n])
	p.total += int64(n)
	p.n -= n
	if p.n == 0 {
		return n, p.err
	}
	return n, nil
}

// nextPiece returns the content bytes in br's buffer, consumed; they stay valid until the next
// read of br. It reads from the client only when it must, and calls beforeWait (if not nil)
// first: whoever holds earlier pieces must pass them on rather than sit on them while the
// client is slow. beforeWait's error is returned as it is.
func (p *filePart) nextPiece(beforeWait func() error) ([]byte, error) {
	ok, err := p.scan(beforeWait)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, p.err
	}
	piece, _ := p.br.Peek(p.n) // buffered: cannot fail
	_, _ = p.br.Discard(p.n)
	p.total += int64(p.n)
	p.n = 0
	return piece, p.err
}

// scan finds how many of br's buffered bytes are content, reading more when it cannot tell
// yet, and says whether there are any. It returns beforeWait's error, if any, untouched.
func (p *filePart) scan(beforeWait func() error) (bool, error) {
	for p.n == 0 && p.err == nil {
		peek, _ := p.br.Peek(p.br.Buffered())
		p.n, p.err = scanUntilBoundary(peek, p.dashBoundary, p.nlDashBoundary, p.total, p.readErr)
		if p.n == 0 && p.err == nil {
			if beforeWait != nil {
				if err := beforeWait(); err != nil {
					return false, err
				}
			}
			_, p.readErr = p.br.Peek(len(peek) + 1) // more than is buffered: reads the client
			if p.readErr == io.EOF {
				p.readErr = io.ErrUnexpectedEOF
			}
		}
	}
	return p.n > 0, nil
}

// scanUntilBoundary and matchAfterPrefix are mime/multipart's (Go 1.26, BSD licence).
func scanUntilBoundary(buf, dashBoundary, nlDashBoundary []byte, total int64, readErr error) (int, error) {
	if total == 0 {
		// At beginning of body, allow dashBoundary.
		if bytes.HasPrefix(buf, dashBoundary) {
			switch matchAfterPrefix(buf, dashBoundary, readErr) {
			case -1:
				return len(dashBoundary), nil
			case 0:
				return 0, nil
			case +1:
				return 0, io.EOF
			}
		}
		if bytes.HasPrefix(dashBoundary, buf) {
			return 0, readErr
		}
	}
	// Search for "\n--boundary".
	if i := bytes.Index(buf, nlDashBoundary); i >= 0 {
		switch matchAfterPrefix(buf[i:], nlDashBoundary, readErr) {
		case -1:
			return i + len(nlDashBoundary), nil
		case 0:
			return i, nil
		case +1:
			return i, io.EOF
		}
	}
	if bytes.HasPrefix(nlDashBoundary, buf) {
		return 0, readErr
	}
	// Anything up to the final \n is not part of the boundary and so must be part of the body.
	// Also if the section from the final \n onward is not a prefix of the boundary, it too must be
	// part of the body.
	i := bytes.LastIndexByte(buf, nlDashBoundary[0])
	if i >= 0 && bytes.HasPrefix(nlDashBoundary, buf[i:]) {
		return i, nil
	}
	return len(buf), readErr
}

func matchAfterPrefix(buf, prefix []byte, readErr error) int {
	if len(buf) == len(prefix) {
		if readErr != nil {
			return +1
		}
		return 0
	}
	c := buf[len(prefix)]
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
		return +1
	}
	if c == '-' { // "--boundary--"
		if len(buf) == len(prefix)+1 {
			if readErr != nil {
				return -1
			}
			return 0
		}
		if buf[len(prefix)+1] == '-' {
			return +1
		}
	}
	return -1
}
