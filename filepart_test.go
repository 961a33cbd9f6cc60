package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"strings"
	"testing"
	"testing/iotest"
)

// readFileBothWays reads the file part of body as the handler does (tap and fast reader when it
// applies) and with mime/multipart alone, and returns both results and whether the fast path ran.
// The fast reader is read twice, with Read and with nextPiece, which must agree.
func readFileBothWays(t *testing.T, body, boundary string, wrap func(io.Reader) io.Reader) (fast, slow string, fastErr, slowErr error, used bool) {
	t.Helper()
	got, fastErr, used := readFileFast(t, body, boundary, wrap, false)
	if used {
		pieces, piecesErr, _ := readFileFast(t, body, boundary, wrap, true)
		if pieces != got || fmt.Sprint(piecesErr) != fmt.Sprint(fastErr) {
			t.Fatalf("nextPiece gave %d bytes, %v; Read gave %d bytes, %v", len(pieces), piecesErr, len(got), fastErr)
		}
	}

	form := multipart.NewReader(wrap(strings.NewReader(body)), boundary)
	for {
		p, err := form.NextPart()
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		if p.FormName() == "file" {
			want, err := io.ReadAll(p)
			return got, string(want), fastErr, err, used
		}
	}
}

// readFileFast reads the file part as the handler does: with Read, or by pieces when it may.
func readFileFast(t *testing.T, body, boundary string, wrap func(io.Reader) io.Reader, byPieces bool) (string, error, bool) {
	t.Helper()
	br := bufio.NewReaderSize(wrap(strings.NewReader(body)), copyBufferBytes)
	tap := &preambleTap{br: br}
	_, part, err := readFieldsUntilFile(multipart.NewReader(tap, boundary), uploadLimits{})
	if err != nil {
		t.Fatalf("fields: %v", err)
	}
	fast := tap.fileReader(boundary)
	if fast == nil {
		got, err := io.ReadAll(part)
		return string(got), err, false
	}
	if !byPieces {
		got, err := io.ReadAll(fast)
		return string(got), err, true
	}
	var got []byte
	for {
		piece, err := fast.(pieceReader).nextPiece(nil)
		got = append(got, piece...)
		if errors.Is(err, io.EOF) {
			return string(got), nil, true
		}
		if err != nil {
			return string(got), err, true
		}
	}
}

func TestFilePartReadsAsMultipartDoes(t *testing.T) {
	t.Parallel()
	const b = "XyZbound"
	big := strings.Repeat("\x89PNG\r\n-\r\n--XyZ\r\n--XyZboun", 40000) // near-boundaries across buffer edges
	head := "--" + b + "\r\nContent-Disposition: form-data; name=\"public_id\"\r\n\r\nabc\r\n" +
		"--" + b + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
	cases := []struct {
		name     string
		body     string
		wantFast bool
	}{
		{"plain", head + big + "\r\n--" + b + "--\r\n", true},
		{"more parts after the file", head + "data\r\n--" + b + "\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n--" + b + "--\r\n", true},
		{"delimiter with trailing space", head + "data\r\n--" + b + " \r\n", true},
		{"not a delimiter: boundary then letters", head + "a\r\n--" + b + "Q more\r\n--" + b + "--", true},
		{"empty file", head + "\r\n--" + b + "--\r\n", true},
		{"file starts with the delimiter", head + "--" + b + "--\r\n", true},
		{"truncated", head + big[:100000], true},
		{"truncated inside the delimiter", head + "data\r\n--" + b[:3], true},
		{"truncated after the delimiter's dash", head + "data\r\n--" + b + "-", true},
		{"delimiter at the very end", head + "data\r\n--" + b, true},
		{"preamble text first", "junk line\r\n" + head + "data\r\n--" + b + "--", true},
		{"bare LF form", strings.ReplaceAll(head, "\r\n", "\n") + "da\r\nta\n--" + b + "--\n", false},
		{"quoted-printable part", strings.Replace(head, "Content-Type: image/png", "Content-Transfer-Encoding: quoted-printable", 1) + "a=3Db\r\n--" + b + "--", false},
		{"LF header lines", strings.Replace(head, "image/png\r\n\r\n", "image/png\n\n", 1) + "data\r\n--" + b + "--", false},
	}
	wraps := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"halves":   iotest.HalfReader,
	}
	for _, tc := range cases {
		for wname, wrap := range wraps {
			fast, slow, fastErr, slowErr, used := readFileBothWays(t, tc.body, b, wrap)
			if used != tc.wantFast {
				t.Errorf("%s (%s): fast path %v, want %v", tc.name, wname, used, tc.wantFast)
			}
			if fast != slow {
				t.Errorf("%s (%s): read %d bytes, multipart reads %d", tc.name, wname, len(fast), len(slow))
			}
			if (fastErr == nil) != (slowErr == nil) || !errors.Is(fastErr, slowErr) && fastErr != nil && fastErr.Error() != slowErr.Error() {
				t.Errorf("%s (%s): error %v, multipart's %v", tc.name, wname, fastErr, slowErr)
			}
		}
	}
}

func TestFilePartKeepsLargeReads(t *testing.T) {
	t.Parallel()
	const b = "bnd"
	body := "--" + b + "\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + string(bytes.Repeat([]byte{'x'}, 100000)) + "\r\n--" + b + "--"
	br := bufio.NewReaderSize(strings.NewReader(body), copyBufferBytes)
	tap := &preambleTap{br: br}
	if _, _, err := readFieldsUntilFile(multipart.NewReader(tap, b), uploadLimits{}); err != nil {
		t.Fatal(err)
	}
	r := tap.fileReader(b)
	if r == nil {
		t.Fatal("fast path not taken for a plain CRLF form")
	}
	n, err := r.Read(make([]byte, 64<<10))
	if n != 64<<10 || err != nil {
		t.Fatalf("first read: %d bytes, %v; want one 64 KiB read (multipart gives at most 4 KiB)", n, err)
	}
}

// FuzzFilePart checks the fast file-part reader against mime/multipart on arbitrary content after
// the file part's headers: same bytes, and an error exactly when multipart has one.
func FuzzFilePart(f *testing.F) {
	const b = "XyZbound"
	head := "--" + b + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
	f.Add([]byte("data\r\n--"+b+"--\r\n"), false)
	f.Add([]byte("\r\n--"+b+"Q\r\n--"+b+" \r\n"), true)
	f.Add([]byte("--"+b+"--"), false)
	f.Add([]byte("a\r\n--XyZ"), true)
	f.Fuzz(func(t *testing.T, tail []byte, oneByte bool) {
		wrap := func(r io.Reader) io.Reader { return r }
		if oneByte {
			wrap = iotest.OneByteReader
		}
		body := head + string(tail)
		fast, slow, fastErr, slowErr, _ := readFileBothWays(t, body, b, wrap)
		if fast != slow {
			t.Fatalf("read %q, multipart reads %q", fast, slow)
		}
		if (fastErr == nil) != (slowErr == nil) {
			t.Fatalf("error %v, multipart's %v", fastErr, slowErr)
		}
	})
}
