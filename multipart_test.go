package main

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"testing"
)

// The tests' one multipart/form-data builder. Tests that need exact bytes (a malformed form, a
// boundary of their own, a body cut short on a raw connection) write them by hand instead.

// formPart is one part of a test form: a text field, or a file.
type formPart struct {
	name, filename string
	file           bool
	contentType    string // a file's Content-Type; application/octet-stream when empty
	content        []byte
}

func field(name, value string) formPart { return formPart{name: name, content: []byte(value)} }

func filePartOf(name, filename string, content []byte) formPart {
	return formPart{name: name, filename: filename, file: true, content: content}
}

// typed is the file part with Content-Type contentType.
func (p formPart) typed(contentType string) formPart {
	p.contentType = contentType
	return p
}

// buildForm writes parts in order, as a browser does (RFC 7578), with a random boundary.
func buildForm(t testing.TB, parts ...formPart) (contentType string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		writePart(t, w, p, true)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

// multipartBody is the form most tests send: text fields in order, then the file part "file"
// (none when file is nil).
func multipartBody(t testing.TB, fields [][2]string, filename string, file []byte) (contentType string, body []byte) {
	t.Helper()
	parts := make([]formPart, 0, len(fields)+1)
	for _, f := range fields {
		parts = append(parts, field(f[0], f[1]))
	}
	if file != nil {
		parts = append(parts, filePartOf("file", filename, file))
	}
	return buildForm(t, parts...)
}

// formAround is the form of parts whose last part is a file the test streams itself: head ends
// where that file's bytes begin (its content in parts is not written), and tail, the closing
// delimiter, follows them.
func formAround(t testing.TB, parts ...formPart) (contentType string, head, tail []byte) {
	t.Helper()
	if len(parts) == 0 || !parts[len(parts)-1].file {
		t.Fatal("formAround: the last part must be a file")
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i, p := range parts {
		writePart(t, w, p, i < len(parts)-1)
	}
	head = bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), head, buf.Bytes()
}

// formBoundary is the boundary parameter of a form's Content-Type.
func formBoundary(t testing.TB, contentType string) string {
	t.Helper()
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		t.Fatalf("Content-Type %q has no boundary: %v", contentType, err)
	}
	return params["boundary"]
}

func writePart(t testing.TB, w *multipart.Writer, p formPart, withContent bool) {
	t.Helper()
	var pw io.Writer
	var err error
	if p.file {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", multipart.FileContentDisposition(p.name, p.filename))
		h.Set("Content-Type", "application/octet-stream")
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		pw, err = w.CreatePart(h)
	} else {
		pw, err = w.CreateFormField(p.name)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !withContent {
		return
	}
	if _, err := pw.Write(p.content); err != nil {
		t.Fatal(err)
	}
}
