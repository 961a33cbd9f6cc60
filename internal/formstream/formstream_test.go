package formstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// scheduleReader gives at most sizes[i] bytes on its i-th read, cycling through sizes.
type scheduleReader struct {
	r     io.Reader
	sizes []int
	i     int
}

func (s *scheduleReader) Read(p []byte) (int, error) {
	if len(s.sizes) > 0 {
		n := s.sizes[s.i%len(s.sizes)]
		s.i++
		if n < len(p) {
			p = p[:n]
		}
	}
	return s.r.Read(p)
}

// sizesFrom turns fuzz bytes into a read-size schedule of 1 to 256 bytes per read.
func sizesFrom(b []byte) []int {
	var sizes []int
	for _, c := range b {
		sizes = append(sizes, int(c)+1)
	}
	return sizes
}

type result struct {
	name, filename string
	content        string
	contentErr     error
}

func (r result) String() string {
	return fmt.Sprintf("{%q %q %d bytes err=%v}", r.name, r.filename, len(r.content), r.contentErr)
}

// readOurs reads every part of body with formstream, by Read or by NextPiece, until an error.
func readOurs(src io.Reader, boundary string, bufSize int, byPieces bool, lim Limits) ([]result, error) {
	rd := NewReader(src, boundary, make([]byte, bufSize), lim)
	var out []result
	for {
		p, err := rd.NextPart()
		if err != nil {
			return out, err
		}
		fn, _ := p.FileName()
		res := result{name: p.Name(), filename: fn}
		var content []byte
		if byPieces {
			for {
				piece, err := p.NextPiece(nil)
				content = append(content, piece...)
				if err == io.EOF {
					break
				}
				if err != nil {
					res.contentErr = err
					break
				}
			}
		} else {
			content, res.contentErr = io.ReadAll(p)
		}
		res.content = string(content)
		out = append(out, res)
		if res.contentErr != nil {
			return out, res.contentErr
		}
	}
}

// readStd reads every part of body with mime/multipart, the oracle.
func readStd(src io.Reader, boundary string) ([]result, []string, error) {
	mr := multipart.NewReader(src, boundary)
	var out []result
	var ctes []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			return out, ctes, err
		}
		content, err := io.ReadAll(p)
		// FileName is filepath.Base of the parameter: compare it with ours the same way.
		out = append(out, result{name: p.FormName(), filename: p.FileName(), content: string(content), contentErr: err})
		ctes = append(ctes, p.Header.Get("Content-Transfer-Encoding"))
		if err != nil {
			return out, ctes, err
		}
	}
}

func baseName(s string) string {
	if s == "" {
		return ""
	}
	return filepath.Base(s)
}

// compare checks ours against mime/multipart's reading of body, as the contract says they
// differ: we refuse a Content-Transfer-Encoding, and we call a body that ends in a part's
// headers truncated where mime/multipart may take it for the end of the form.
func compare(t *testing.T, body []byte, boundary string, sizes []int, bufSize int, byPieces bool) {
	t.Helper()
	ours, ourErr := readOurs(&scheduleReader{r: bytes.NewReader(body), sizes: sizes}, boundary, bufSize, byPieces, Limits{})
	std, ctes, stdErr := readStd(&scheduleReader{r: bytes.NewReader(body), sizes: sizes}, boundary)
	if errors.Is(ourErr, ErrTransferEncoding) {
		if len(ours) >= len(std) || ctes == nil && len(std) == 0 {
			t.Fatalf("refused a Content-Transfer-Encoding mime/multipart did not see: ours %v, std %v", ours, std)
		}
		std, stdErr = std[:len(ours)], ourErr
	}
	for i := range min(len(ours), len(std)) {
		o, s := ours[i], std[i]
		if o.name != s.name || baseName(o.filename) != s.filename {
			t.Fatalf("part %d: ours %v, std %v", i, o, s)
		}
		if (o.contentErr == nil) != (s.contentErr == nil) {
			t.Fatalf("part %d content: ours %v, std %v\nbody %q", i, o, s, body)
		}
		if o.contentErr == nil && o.content != s.content {
			t.Fatalf("part %d content: ours %q, std %q", i, o.content, s.content)
		}
	}
	if len(ours) != len(std) {
		truncatedHeaders := errors.Is(ourErr, ErrTruncated) && strings.Contains(ourErr.Error(), "headers") && stdErr == io.EOF
		if !truncatedHeaders || len(ours) != len(std) {
			t.Fatalf("ours %d parts (%v), std %d (%v)\nours %v\nstd %v\nbody %q", len(ours), ourErr, len(std), stdErr, ours, std, body)
		}
	}
	if (ourErr == io.EOF) != (stdErr == io.EOF) {
		truncatedHeaders := errors.Is(ourErr, ErrTruncated) && strings.Contains(ourErr.Error(), "headers") && stdErr == io.EOF
		if !truncatedHeaders {
			t.Fatalf("end: ours %v, std %v\nbody %q", ourErr, stdErr, body)
		}
	}
}

const bnd = "XyZbound"

func part(disposition, content string) string {
	return "--" + bnd + "\r\nContent-Disposition: " + disposition + "\r\n\r\n" + content + "\r\n"
}

const closing = "--" + bnd + "--\r\n"

func FuzzAgainstMultipart(f *testing.F) {
	f.Add([]byte(part(`form-data; name="a"`, "1")+part(`form-data; name="file"; filename="a.png"`, "\x89PNG\r\n--XyZ\r\n--XyZboundQ")+closing), []byte{0}, false)
	f.Add([]byte("preamble\r\n--"+bnd+"\r\n\r\n\r\n--"+bnd+"  \t\r\n\r\nx\r\n--"+bnd+"--"), []byte{3, 1}, true)
	f.Add([]byte("--"+bnd+"\nContent-Disposition: form-data; name=\"f\"\n\nab\r\nc\n--"+bnd+"--\n"), []byte{1}, false)
	f.Add([]byte("--"+bnd+"\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n--"+bnd+"--"), []byte{5}, true)
	f.Add([]byte("--"+bnd+"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db\r\n--"+bnd+"--"), []byte{}, false)
	f.Add([]byte("--"+bnd+"\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nabc\r\n--"+bnd+"-"), []byte{2}, false)
	f.Add([]byte("--"+bnd+"\r\nA: b\r\n"), []byte{}, false)
	f.Fuzz(func(t *testing.T, body, schedule []byte, byPieces bool) {
		if len(body) > 3000 {
			t.Skip("mime/multipart refuses lines longer than its 4 KiB buffer; we do not")
		}
		compare(t, body, bnd, sizesFrom(schedule), minBuffer+2*len(bnd), byPieces)
	})
}

func TestAgainstMultipart(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("\x89PNG\r\n-\r\n--XyZ\r\n--XyZboun\r\n--"+bnd+"X", 20000) // near-delimiters everywhere
	head := part(`form-data; name="public_id"`, "abc")
	file := "--" + bnd + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
	cases := map[string]string{
		"plain":                                 head + file + big + "\r\n" + closing,
		"transport padding after a delimiter":   "--" + bnd + " \t \r\n\r\nv\r\n--" + bnd + "\t\r\n\r\nw\r\n--" + bnd + "-- \t\r\n",
		"bare LF":                               strings.ReplaceAll(head+file+"da\r\nta\n"+closing, "\r\n", "\n") + "da\r\nta\n--" + bnd + "--\n",
		"bare LF with CR in content":            "--" + bnd + "\n\nx\r\n--" + bnd + "\r\n\n--" + bnd + "--\n",
		"delimiter-like bytes inside a file":    file + "\r\n--" + bnd + "Q\r\n-" + bnd + "\n--" + bnd + "\r\n--" + bnd[:4] + "\r\n" + closing,
		"no closing delimiter":                  head + file + "data",
		"no closing delimiter, ends in one":     head + file + "data\r\n--" + bnd[:3],
		"ends right after a delimiter":          head + file + "data\r\n--" + bnd,
		"ends after the delimiter's dash":       head + file + "data\r\n--" + bnd + "-",
		"closing delimiter without line break":  head + file + "data\r\n--" + bnd + "--",
		"empty parts":                           "--" + bnd + "\r\n\r\n\r\n--" + bnd + "\r\n\r\n--" + bnd + "\r\n" + file + "\r\n" + closing,
		"empty file right before the delimiter": file + closing,
		"epilogue":                              head + closing + "epilogue --" + bnd + "\r\n",
		"preamble":                              "This is a preamble.\r\n--" + bnd + "x\r\n" + head + closing,
		"no parts":                              closing,
		"junk after a part":                     head + "junk\r\n" + closing,
		"junk after a delimiter":                head + "--" + bnd + " x\r\n" + closing,
		"LF delimiter in a CRLF form":           head + "--" + bnd + "\n\r\nx\r\n" + closing,
		"headers ended by LF":                   strings.Replace(file, "image/png\r\n\r\n", "image/png\n\n", 1) + "data\r\n" + closing,
		"malformed header":                      "--" + bnd + "\r\nno colon here\r\n\r\nx\r\n" + closing,
		"header continuation":                   "--" + bnd + "\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\nx\r\n" + closing,
		"not form-data":                         "--" + bnd + "\r\nContent-Disposition: attachment; name=\"a\"; filename=\"x/y.png\"\r\n\r\nx\r\n" + closing,
		"empty body":                            "",
	}
	sizes := map[string][]int{"whole": nil, "one byte": {1}, "odd": {7, 1, 3, 300, 2}, "delimiter split": {len(file) + 3, 5}}
	for name, body := range cases {
		for sname, s := range sizes {
			for _, pieces := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/pieces=%v", name, sname, pieces), func(t *testing.T) {
					compare(t, []byte(body), bnd, s, minBuffer+2*len(bnd), pieces)
					compare(t, []byte(body), bnd, s, 1<<20, pieces)
				})
			}
		}
	}
}

func TestOneByteReads(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("a\r\n-", 5000)
	body := part(`form-data; name="file"; filename="a"`, content) + closing
	got, err := readOurs(iotest.OneByteReader(strings.NewReader(body)), bnd, 8<<10, true, Limits{})
	if err != io.EOF || len(got) != 1 || got[0].content != content {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	lim := Limits{NonFileBytes: 64 << 10, HeaderBytes: 8 << 10, Parts: 3}
	cases := []struct {
		name string
		body string
		want error
	}{
		{"1 MiB header line", "--" + bnd + "\r\nX-Long: " + strings.Repeat("a", 1<<20) + "\r\n\r\nx\r\n" + closing, ErrHeaderTooLarge},
		{"too many parts", strings.Repeat(part(`form-data; name="a"`, "1"), 4) + closing, ErrTooManyParts},
		{"text fields over the budget", part(`form-data; name="a"`, strings.Repeat("v", 40<<10)) + part(`form-data; name="b"`, strings.Repeat("v", 30<<10)) + closing, ErrTooLarge},
		{"preamble over the budget", strings.Repeat("junk line\r\n", 7000) + closing, ErrTooLarge},
		{"transfer encoding", "--" + bnd + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\nContent-Transfer-Encoding: binary\r\n\r\nx\r\n" + closing, ErrTransferEncoding},
		{"no closing delimiter", part(`form-data; name="file"; filename="a"`, "data")[:60], ErrTruncated},
		{"junk after a delimiter", part(`form-data; name="a"`, "1") + "--" + bnd + " junk\r\n" + closing, ErrMalformed},
		{"malformed header", "--" + bnd + "\r\n: nothing\r\n\r\nx\r\n" + closing, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, pieces := range []bool{false, true} {
				_, err := readOurs(iotest.HalfReader(strings.NewReader(tc.body)), bnd, 1<<20, pieces, lim)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
			}
		})
	}
}

func TestFileContentIsNotBudgeted(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("x", 1<<20)
	body := part(`form-data; name="a"`, "1") + part(`form-data; name="file"; filename="f"`, content) + closing
	got, err := readOurs(strings.NewReader(body), bnd, 256<<10, true, Limits{NonFileBytes: 1 << 10})
	if err != io.EOF || len(got) != 2 || got[1].content != content {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestBodyErrorsPassThrough(t *testing.T) {
	t.Parallel()
	gone := errors.New("client went away")
	src := io.MultiReader(strings.NewReader(part(`form-data; name="file"; filename="f"`, "abc")[:75]), iotest.ErrReader(gone))
	_, err := readOurs(src, bnd, 8<<10, true, Limits{})
	if !errors.Is(err, gone) {
		t.Fatalf("err %v, want the body's own error", err)
	}
}

func TestPiecesAreLargeAndBuffered(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("y", 300<<10)
	body := part(`form-data; name="file"; filename="f"`, content) + closing
	rd := NewReader(strings.NewReader(body), bnd, make([]byte, 1<<20), Limits{})
	p, err := rd.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Buffered(); got != len(content) {
		t.Fatalf("Buffered %d, want the whole content %d (strings.Reader gives it in one read)", got, len(content))
	}
	waited := false
	piece, err := p.NextPiece(func() error { waited = true; return nil })
	if len(piece) != len(content) || err != io.EOF || waited {
		t.Fatalf("piece %d bytes, %v, waited %v; want the whole content with io.EOF, no wait", len(piece), err, waited)
	}
	if _, err := rd.NextPart(); err != io.EOF {
		t.Fatalf("after the last part: %v", err)
	}
}

func TestBeforeWaitErrorIsReturned(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, part(`form-data; name="file"; filename="f"`, "abc")[:75])
	}()
	rd := NewReader(pr, bnd, make([]byte, 8<<10), Limits{})
	p, err := rd.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	for {
		piece, err := p.NextPiece(func() error { return stop })
		if errors.Is(err, stop) {
			break
		}
		if err != nil || len(piece) == 0 {
			t.Fatalf("piece %q, %v", piece, err)
		}
	}
	_ = pr.Close()
}

// FuzzFileContent is FuzzAgainstMultipart aimed at a file part's content: a fixed form head,
// then arbitrary bytes, read by Read and by NextPiece, one byte at a time or in large reads.
func FuzzFileContent(f *testing.F) {
	head := part(`form-data; name="public_id"`, "abc") + "--" + bnd + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
	f.Add([]byte("data\r\n--"+bnd+"--\r\n"), false)
	f.Add([]byte("\r\n--"+bnd+"Q\r\n--"+bnd+" \r\n"), true)
	f.Add([]byte("--"+bnd+"--"), false)
	f.Add([]byte("a\r\n--XyZ"), true)
	f.Fuzz(func(t *testing.T, tail []byte, oneByte bool) {
		var sizes []int
		if oneByte {
			sizes = []int{1}
		}
		body := append([]byte(head), tail...)
		for _, pieces := range []bool{false, true} {
			compare(t, body, bnd, sizes, minBuffer+2*len(bnd), pieces)
		}
	})
}
