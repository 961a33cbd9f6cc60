package cloudinary

import (
	"bytes"
	"io"
	"maps"
	"mime/multipart"
	"net/url"
	"slices"
	"strings"
)

// uploadForm is a multipart body: the fields and the file part's headers, the file, the closing
// delimiter. Its WriteTo hands the file the request's writer, so the file's own WriteTo decides
// the piece size and nothing is copied on the way.
type uploadForm struct {
	head []byte // fields, then the file part's delimiter and headers
	file io.Reader
	tail []byte // CRLF and the closing delimiter
	r    io.Reader
}

func newUploadForm(fields url.Values, file io.Reader) (*uploadForm, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if err := mw.WriteField(k, fields.Get(k)); err != nil {
			return nil, "", err
		}
	}
	if _, err := mw.CreateFormFile("file", "file"); err != nil { // the SDK's name; filename_override has the client's
		return nil, "", err
	}
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	f := &uploadForm{head: head, file: file, tail: buf.Bytes()}
	f.r = io.MultiReader(bytes.NewReader(f.head), f.file, bytes.NewReader(f.tail))
	return f, mw.FormDataContentType(), nil
}

func (f *uploadForm) Read(p []byte) (int, error) { return f.r.Read(p) }

func (f *uploadForm) Close() error { return nil } // the file's owner stops it (the caller, or chunkReader.detach)

func (f *uploadForm) WriteTo(w io.Writer) (int64, error) {
	sw := &smallWrites{w: w, buf: make([]byte, 0, smallWriteBytes)}
	n, err := sw.Write(f.head)
	total := int64(n)
	if err != nil {
		return total, err
	}
	m, err := io.Copy(sw, f.file) // the file's WriteTo
	total += m
	if err != nil {
		return total, err
	}
	n, err = sw.Write(f.tail)
	total += int64(n)
	if err != nil {
		return total, err
	}
	return total, sw.Flush()
}

// smallWriteBytes bounds the writes smallWrites gathers; the transport's write buffer holds
// one such batch with its chunk framing.
const smallWriteBytes = 8 << 10

// smallWrites gathers small writes into one. Each write to the transport is a chunk and at
// least one system call; a small file is otherwise sent as a handful of tiny chunks (the form's
// head, the bytes read to sniff the type, the rest of the first read, the closing delimiter).
// Large writes go through as they are, without a copy. A file's WriteTo calls Flush before it
// waits for more of the file.
type smallWrites struct {
	w   io.Writer
	buf []byte
}

func (s *smallWrites) Write(p []byte) (int, error) {
	if len(s.buf)+len(p) > cap(s.buf) {
		if err := s.Flush(); err != nil {
			return 0, err
		}
		if len(p) >= cap(s.buf) {
			return s.w.Write(p)
		}
	}
	s.buf = append(s.buf, p...)
	return len(p), nil
}

// Flush writes what was gathered.
func (s *smallWrites) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}

// contextEscaper escapes a context key or value as Cloudinary's SDKs do: '=' and '|' separate
// pairs, so within one they are preceded by '\' (and so is '\' itself).
var contextEscaper = strings.NewReplacer(`\`, `\\`, `=`, `\=`, `|`, `\|`)

// AddContext appends key=value to a context parameter (key=value|key=value), escaped.
func AddContext(context, key, value string) string {
	pair := contextEscaper.Replace(key) + "=" + contextEscaper.Replace(value)
	if context == "" {
		return pair
	}
	return context + "|" + pair
}

// ContextHasKey reports whether a context parameter (key=value|key=value, with '\' escapes)
// holds key.
func ContextHasKey(context, key string) bool {
	var cur strings.Builder
	inKey, escaped := true, false
	for i := 0; i <= len(context); i++ {
		if i == len(context) || !escaped && context[i] == '|' {
			if inKey && cur.String() == key { // a key without '=': Cloudinary takes it with an empty value
				return true
			}
			cur.Reset()
			inKey = true
			continue
		}
		c := context[i]
		switch {
		case escaped:
			escaped = false
			if inKey {
				cur.WriteByte(c)
			}
		case c == '\\':
			escaped = true
		case c == '=' && inKey:
			if cur.String() == key {
				return true
			}
			inKey = false
		case inKey:
			cur.WriteByte(c)
		}
	}
	return false
}
