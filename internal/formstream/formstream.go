// Package formstream reads a multipart/form-data body (RFC 7578, framed as RFC 2046 §5.1
// says) as a stream: one part at a time, each part's headers, then its content, without
// ever holding more than one buffer of the body.
//
// The contract:
//
//   - NewReader takes the body, the boundary from its Content-Type and a buffer; every read of
//     the body goes into that buffer, and a part's content is handed out either through Read
//     or, with NextPiece, as slices of that buffer (no copy), valid until the next call on the
//     Reader or any of its Parts.
//   - NextPart skips the preamble, reads the next delimiter line and the part's headers, and
//     returns the part; io.EOF at the closing delimiter. Whatever is left of the previous part
//     is skipped first. Nothing after the closing delimiter (the epilogue) is read.
//   - Delimiters: "--boundary" at the start of a line, then transport padding (spaces and tabs),
//     then the line break. Lines end in CRLF; a body whose first delimiter line ends in a bare
//     LF is read with LF line breaks throughout, as some clients send. The line break before a
//     delimiter belongs to the delimiter, not to the content before it. A closing delimiter
//     ("--boundary--") may end the body without a line break. In a part's content, a line break
//     and "--boundary" end the content when a space, a tab, CR, LF, "--" or the body's end
//     follows (as mime/multipart decides); the rest of that line must then be a delimiter's.
//   - A part is a file when its Content-Disposition has a filename parameter (RFC 7578 §4.2),
//     whatever else it says; Name is the name of a form-data disposition.
//   - Limits (Limits): the bytes of everything but file content (preamble, delimiters, headers,
//     the content of parts without a filename), the size of one part's headers, and the
//     number of parts. A zero field is no limit.
//   - Refused: a part with a Content-Transfer-Encoding header (RFC 7578 §4.7 deprecates it),
//     headers that are not MIME headers, a line after a part that is not a delimiter.
//   - Errors: ErrMalformed, ErrTruncated (ErrNoDelimiter when the body has not one delimiter line), ErrTooLarge, ErrHeaderTooLarge, ErrTooManyParts and
//     ErrTransferEncoding, wrapped with detail (test with errors.Is); an error from the body
//     itself is returned unchanged, wrapped or not, so the caller can tell a client's
//     disconnection or a size cap from a malformed form. Errors are sticky.
//
// A Reader is not safe for concurrent use.
package formstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/textproto"
)

// The errors of a form that cannot be read.
var (
	ErrMalformed        = errors.New("malformed multipart body")
	ErrTruncated        = errors.New("multipart body ended before its closing delimiter")
	ErrNoDelimiter      = fmt.Errorf("%w: it has no delimiter line of the boundary", ErrTruncated)
	ErrTooLarge         = errors.New("form's parts other than files are larger than the limit")
	ErrHeaderTooLarge   = errors.New("part's headers are larger than the limit")
	ErrTooManyParts     = errors.New("form has more parts than the limit")
	ErrTransferEncoding = errors.New("part has a Content-Transfer-Encoding")
)

// Limits bound what a form may make the reader read that is not file content. Zero is no limit.
type Limits struct {
	// NonFileBytes bounds the preamble, delimiter lines, part headers and the content of parts
	// without a filename, all together.
	NonFileBytes int64
	// HeaderBytes bounds one part's headers; the buffer's size bounds them too.
	HeaderBytes int
	// Parts bounds the number of parts.
	Parts int
}

// minBuffer is the least buffer the reader works with, on top of twice the boundary.
const minBuffer = 4 << 10

// Reader reads the parts of one multipart/form-data body.
type Reader struct {
	src     io.Reader
	buf     []byte
	r, w    int   // buf[r:w] is read from src and not consumed
	srcErr  error // what src said after buf[:w]; io.EOF at its end
	dash    []byte
	nl      []byte // "\r\n", or "\n" in bare-LF mode
	nlDash  []byte // nl + dash
	lim     Limits
	spent   int64 // non-file bytes consumed
	parts   int
	started bool  // the first delimiter has been read
	done    bool  // the closing delimiter has been read
	err     error // sticky
	cur     *Part
	hdr     *bufio.Reader // reused to parse each part's headers
}

// NewReader reads the body src with the given boundary (without its leading "--"). buf is
// the reader's buffer; one smaller than twice the boundary plus 4 KiB is replaced by a new one.
func NewReader(src io.Reader, boundary string, buf []byte, lim Limits) *Reader {
	if len(buf) < 2*len(boundary)+minBuffer {
		buf = make([]byte, 2*len(boundary)+minBuffer)
	}
	rd := &Reader{
		src:  src,
		buf:  buf,
		dash: []byte("--" + boundary),
		lim:  lim,
	}
	rd.setNL("\r\n")
	return rd
}

func (rd *Reader) setNL(nl string) {
	rd.nl = []byte(nl)
	rd.nlDash = append([]byte(nl), rd.dash...)
}

// Buffered is how many bytes of the body the reader holds that nobody has consumed yet.
func (rd *Reader) Buffered() int { return rd.w - rd.r }

// fill reads once more from src into buf, making room first. It reports whether it got bytes;
// when not, rd.srcErr says why. A full buffer that nobody consumes is the caller's to refuse.
func (rd *Reader) fill() bool {
	if rd.srcErr != nil {
		return false
	}
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	} else if rd.r > 0 && len(rd.buf)-rd.w < len(rd.buf)/2 {
		rd.w = copy(rd.buf, rd.buf[rd.r:rd.w]) // the undecided tail: short in the steady state
		rd.r = 0
	}
	if rd.w == len(rd.buf) {
		return false
	}
	for range 100 { // io.Reader allows (0, nil); do not spin forever on it
		n, err := rd.src.Read(rd.buf[rd.w:])
		rd.w += n
		if err != nil {
			rd.srcErr = err
		}
		if n > 0 || err != nil {
			return n > 0
		}
	}
	rd.srcErr = io.ErrNoProgress
	return false
}

// atEOF says the body has ended cleanly after what is buffered.
func (rd *Reader) atEOF() bool { return rd.srcErr == io.EOF }

// waitErr is the error for needing more bytes than the body gave: truncation at its end, or
// the body's own error.
func (rd *Reader) waitErr(where string) error {
	if rd.srcErr == io.EOF {
		return fmt.Errorf("%w (%s)", ErrTruncated, where)
	}
	if rd.srcErr == nil { // the buffer is full of one undecided line
		return fmt.Errorf("%w: %s longer than the buffer", ErrMalformed, where)
	}
	return rd.srcErr
}

// consume drops n buffered bytes that are not file content, within the limit.
func (rd *Reader) consume(n int) error {
	rd.r += n
	rd.spent += int64(n)
	if rd.lim.NonFileBytes > 0 && rd.spent > rd.lim.NonFileBytes {
		return fmt.Errorf("%w of %d bytes", ErrTooLarge, rd.lim.NonFileBytes)
	}
	return nil
}

// nonFileLeft is how many more non-file bytes may be consumed.
func (rd *Reader) nonFileLeft() int64 {
	if rd.lim.NonFileBytes <= 0 {
		return 1 << 62
	}
	return rd.lim.NonFileBytes - rd.spent
}

// NextPart returns the next part, with its headers read; io.EOF after the closing delimiter.
func (rd *Reader) NextPart() (*Part, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	p, err := rd.nextPart()
	if err != nil {
		if err != io.EOF {
			rd.err = err
		}
		return nil, err
	}
	return p, nil
}

func (rd *Reader) nextPart() (*Part, error) {
	if rd.done {
		return nil, io.EOF
	}
	if rd.cur != nil {
		if err := rd.cur.skip(); err != nil {
			return nil, err
		}
		rd.cur.gone = true
		rd.cur = nil
	}
	if !rd.started {
		if err := rd.skipPreamble(); err != nil {
			return nil, err
		}
	} else if err := rd.afterContent(); err != nil {
		return nil, err
	}
	if rd.done {
		return nil, io.EOF
	}
	rd.parts++
	if rd.lim.Parts > 0 && rd.parts > rd.lim.Parts {
		return nil, fmt.Errorf("%w of %d", ErrTooManyParts, rd.lim.Parts)
	}
	p := &Part{rd: rd, atStart: true}
	if err := p.readHeaders(); err != nil {
		return nil, err
	}
	rd.cur = p
	return p, nil
}

// line returns the buffered line at rd.r, '\n' included, without consuming it. At the end of
// the body it returns what is left, without '\n'. It returns ErrMalformed for a line longer
// than the buffer, and the body's other errors as they are.
func (rd *Reader) line(what string) ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(rd.buf[rd.r+scanned:rd.w], '\n'); i >= 0 {
			return rd.buf[rd.r : rd.r+scanned+i+1], nil
		}
		scanned = rd.w - rd.r
		if !rd.fill() {
			if rd.atEOF() {
				return rd.buf[rd.r:rd.w], nil
			}
			return nil, rd.waitErr(what)
		}
	}
}

// skipPreamble consumes lines up to and including the first delimiter line.
func (rd *Reader) skipPreamble() error {
	for {
		// A preamble line that cannot start with the delimiter is skipped without being held whole.
		for rd.w-rd.r < len(rd.dash) && !bytes.Contains(rd.buf[rd.r:rd.w], []byte{'\n'}) {
			if !rd.fill() {
				break
			}
		}
		if head := rd.buf[rd.r:rd.w]; !bytes.HasPrefix(head, rd.dash) && (len(head) >= len(rd.dash) || bytes.IndexByte(head, '\n') >= 0) {
			if err := rd.skipLine(); err != nil {
				return err
			}
			continue
		}
		line, err := rd.line("a line of the preamble")
		if err != nil {
			return err
		}
		if len(line) == 0 { // the body ended
			return ErrNoDelimiter
		}
		final, delim := rd.delimiterLine(line)
		if err := rd.consume(len(line)); err != nil {
			return err
		}
		switch {
		case final:
			rd.started, rd.done = true, true
			return nil
		case delim:
			rd.started = true
			return nil
		case line[len(line)-1] != '\n':
			return ErrNoDelimiter
		}
	}
}

// skipLine consumes the line at rd.r, however long, counting it as non-file bytes.
func (rd *Reader) skipLine() error {
	for {
		if i := bytes.IndexByte(rd.buf[rd.r:rd.w], '\n'); i >= 0 {
			return rd.consume(i + 1)
		}
		if err := rd.consume(rd.w - rd.r); err != nil {
			return err
		}
		if !rd.fill() {
			if rd.atEOF() {
				return ErrNoDelimiter
			}
			return rd.waitErr("a line of the preamble")
		}
	}
}

// delimiterLine says whether line (from the body, '\n' included unless the body ended) is the
// closing delimiter or a delimiter. The first delimiter decides the line break of the form.
func (rd *Reader) delimiterLine(line []byte) (final, delim bool) {
	rest, ok := bytes.CutPrefix(line, rd.dash)
	if !ok {
		return false, false
	}
	if after, ok := bytes.CutPrefix(rest, []byte("--")); ok {
		after = bytes.TrimLeft(after, " \t")
		return len(after) == 0 || bytes.Equal(after, rd.nl), false
	}
	rest = bytes.TrimLeft(rest, " \t")
	if !rd.started && len(rest) == 1 && rest[0] == '\n' {
		rd.setNL("\n")
	}
	return false, bytes.Equal(rest, rd.nl)
}

// afterContent reads the delimiter line that ended a part's content; rd.r is at its line break
// (or, for a part whose content is empty and headers end right before it, at the delimiter).
func (rd *Reader) afterContent() error {
	if bytes.HasPrefix(rd.buf[rd.r:rd.w], rd.nl) {
		if err := rd.consume(len(rd.nl)); err != nil {
			return err
		}
	}
	line, err := rd.line("a delimiter line")
	if err != nil {
		return err
	}
	final, delim := rd.delimiterLine(line)
	if !final && !delim {
		if len(line) == 0 || !bytes.HasSuffix(line, []byte{'\n'}) && bytes.HasPrefix(line, rd.dash) {
			return fmt.Errorf("%w (in a delimiter line)", ErrTruncated)
		}
		return fmt.Errorf("%w: expected a delimiter after a part, got %q", ErrMalformed, clip(line))
	}
	if err := rd.consume(len(line)); err != nil {
		return err
	}
	rd.done = final
	return nil
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// Part is one part of the form: its headers, then its content through Read or NextPiece.
type Part struct {
	Header   textproto.MIMEHeader
	name     string
	filename string
	isFile   bool

	rd      *Reader
	atStart bool  // no content consumed yet: the delimiter may come without a line break first
	ready   int   // buffered bytes at rd.r known to be content
	end     bool  // the content ends after ready bytes
	err     error // what comes after ready bytes instead, sticky
	gone    bool  // NextPart has moved past this part
}

// Name is the part's name from Content-Disposition: form-data; "" when it has none.
func (p *Part) Name() string { return p.name }

// FileName is the filename parameter of the part's Content-Disposition as sent, and whether it
// has one: RFC 7578 §4.2 makes such a part a file, whatever else it says.
func (p *Part) FileName() (string, bool) { return p.filename, p.isFile }

// readHeaders reads the part's header block up to its blank line and parses it.
func (p *Part) readHeaders() error {
	rd := p.rd
	limit := len(rd.buf)
	if rd.lim.HeaderBytes > 0 && rd.lim.HeaderBytes < limit {
		limit = rd.lim.HeaderBytes
	}
	if left := rd.nonFileLeft(); left < int64(limit) {
		limit = int(max(left, 0)) + 1 // one past what is left: consume says which limit
	}
	size, scanned := -1, 0
	for size < 0 {
		b := rd.buf[rd.r:rd.w]
		for scanned < len(b) {
			i := bytes.IndexByte(b[scanned:], '\n')
			if i < 0 {
				break
			}
			line := b[scanned : scanned+i+1]
			scanned += i + 1
			if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
				size = scanned
				break
			}
		}
		if size >= 0 {
			break
		}
		if scanned > limit || rd.w-rd.r > limit {
			return headerLimitErr(rd, limit)
		}
		if !rd.fill() {
			if rd.w-rd.r >= limit {
				return headerLimitErr(rd, limit)
			}
			return rd.waitErr("in a part's headers")
		}
	}
	if size > limit {
		return headerLimitErr(rd, limit)
	}
	if rd.hdr == nil {
		// Small: textproto joins longer lines itself, and most header blocks are one line.
		rd.hdr = bufio.NewReaderSize(nil, 256)
	}
	rd.hdr.Reset(bytes.NewReader(rd.buf[rd.r : rd.r+size]))
	h, err := textproto.NewReader(rd.hdr).ReadMIMEHeader()
	rd.hdr.Reset(nil)
	if err != nil {
		return fmt.Errorf("%w: part headers: %w", ErrMalformed, err)
	}
	if err := rd.consume(size); err != nil {
		return err
	}
	if _, ok := h["Content-Transfer-Encoding"]; ok {
		return ErrTransferEncoding
	}
	p.Header = h
	if disp, params, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil {
		if disp == "form-data" {
			p.name = params["name"]
		}
		p.filename, p.isFile = params["filename"]
	}
	return nil
}

func headerLimitErr(rd *Reader, limit int) error {
	if rd.nonFileLeft() < int64(limit) {
		return fmt.Errorf("%w of %d bytes", ErrTooLarge, rd.lim.NonFileBytes)
	}
	return fmt.Errorf("%w of %d bytes", ErrHeaderTooLarge, limit)
}

// The answers of after: what follows "--boundary" (or nl + "--boundary") in the content.
const (
	notDelimiter = iota
	isDelimiter
	undecided
)

// after decides whether rest, the bytes after a candidate "--boundary", make it a delimiter:
// transport padding, a line break or "--" follow a delimiter; at the end of the body, nothing.
func after(rest []byte, atEOF bool) int {
	if len(rest) == 0 {
		if atEOF {
			return isDelimiter
		}
		return undecided
	}
	switch rest[0] {
	case ' ', '\t', '\r', '\n':
		return isDelimiter
	case '-':
		if len(rest) == 1 {
			if atEOF {
				return notDelimiter
			}
			return undecided
		}
		if rest[1] == '-' {
			return isDelimiter
		}
	}
	return notDelimiter
}

// decide finds how much of buf, the buffered bytes at the part's position, is content, and
// whether the content ends there.
func (p *Part) decide(buf []byte, atEOF bool) (n int, end bool) {
	rd := p.rd
	if p.atStart && len(buf) > 0 && len(buf) <= len(rd.dash) && bytes.HasPrefix(rd.dash, buf) && !(atEOF && len(buf) == len(rd.dash)) {
		return 0, false // the start of a delimiter, or of content
	}
	if p.atStart && bytes.HasPrefix(buf, rd.dash) {
		switch after(buf[len(rd.dash):], atEOF) {
		case isDelimiter:
			return 0, true
		case undecided:
			return 0, false
		}
	}
	from := 0
	for {
		i := bytes.Index(buf[from:], rd.nlDash)
		if i < 0 {
			break
		}
		i += from
		switch after(buf[i+len(rd.nlDash):], atEOF) {
		case isDelimiter:
			return i, true
		case undecided:
			return i, false
		}
		from = i + 1
	}
	// The longest tail that may be the start of a delimiter waits for more bytes.
	for j := max(from, len(buf)-len(rd.nlDash)+1); j < len(buf); j++ {
		if buf[j] == rd.nlDash[0] && bytes.HasPrefix(rd.nlDash, buf[j:]) {
			return j, false
		}
	}
	return len(buf), false
}

// scan makes p.ready > 0, or finds the end of the content or an error, reading the body only
// when it must and calling beforeWait (if not nil) first; beforeWait's error is returned as it is.
func (p *Part) scan(beforeWait func() error) error {
	rd := p.rd
	for p.ready == 0 && !p.end && p.err == nil {
		if p.gone {
			p.err = errors.New("formstream: part read after NextPart")
			break
		}
		n, end := p.decide(rd.buf[rd.r:rd.w], rd.atEOF())
		p.ready, p.end = n, end
		if n > 0 || end {
			break
		}
		if rd.srcErr != nil {
			p.err = rd.waitErr("in a part's content")
			break
		}
		if beforeWait != nil {
			if err := beforeWait(); err != nil {
				return err
			}
		}
		if !rd.fill() && rd.srcErr == nil {
			p.err = fmt.Errorf("%w: buffer full of undecided bytes", ErrMalformed) // cannot happen: the buffer holds a delimiter
		}
	}
	return nil
}

// Buffered is how many content bytes the part can give without reading the body.
func (p *Part) Buffered() int {
	if p.ready == 0 && !p.end && p.err == nil && !p.gone {
		p.ready, p.end = p.decide(p.rd.buf[p.rd.r:p.rd.w], p.rd.atEOF())
	}
	return p.ready
}

// take consumes up to n ready bytes and returns them, a slice of the buffer.
func (p *Part) take(n int) ([]byte, error) {
	rd := p.rd
	n = min(n, p.ready)
	if !p.isFile {
		if left := rd.nonFileLeft(); int64(n) > left {
			n = int(max(left, 0))
			if n == 0 {
				p.err = fmt.Errorf("%w of %d bytes", ErrTooLarge, rd.lim.NonFileBytes)
				rd.err = p.err
				return nil, p.err
			}
		}
		rd.spent += int64(n)
	}
	b := rd.buf[rd.r : rd.r+n]
	rd.r += n
	p.ready -= n
	if n > 0 {
		p.atStart = false
	}
	return b, nil
}

// status is what a read that gave its bytes returns: nil, or at the end io.EOF or the error.
func (p *Part) status() error {
	if p.ready > 0 {
		return nil
	}
	if p.end {
		return io.EOF
	}
	return p.err
}

// Read reads the part's content; io.EOF at its end.
func (p *Part) Read(b []byte) (int, error) {
	if err := p.scan(nil); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	if p.ready == 0 {
		return 0, p.status()
	}
	piece, err := p.take(len(b))
	if err != nil {
		return 0, err
	}
	return copy(b, piece), p.status()
}

// NextPiece returns the content bytes the reader holds, consumed: a slice of the reader's
// buffer, valid until the next call on the Reader or its parts. It reads the body only when it
// holds none, and calls beforeWait (if not nil) first, so that whoever holds earlier pieces can
// pass them on rather than sit on them while the client is slow; beforeWait's error is
// returned as it is. At the end of the content it returns io.EOF, possibly with a last piece.
func (p *Part) NextPiece(beforeWait func() error) ([]byte, error) {
	if err := p.scan(beforeWait); err != nil {
		return nil, err
	}
	if p.ready == 0 {
		return nil, p.status()
	}
	piece, err := p.take(p.ready)
	if err != nil {
		return nil, err
	}
	return piece, p.status()
}

// skip consumes what is left of the content, up to the delimiter.
func (p *Part) skip() error {
	for {
		if err := p.scan(nil); err != nil {
			return err
		}
		if p.ready == 0 {
			if p.end {
				return nil
			}
			return p.err
		}
		if _, err := p.take(p.ready); err != nil {
			return err
		}
	}
}
