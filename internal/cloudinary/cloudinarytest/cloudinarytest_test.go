package cloudinarytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"

	"cloudinary-upload-api/internal/testkit"
)

func TestFakeSignatureDocsVector(t *testing.T) {
	t.Parallel()
	params := url.Values{
		"eager":     {"w_400,h_300,c_pad|w_260,h_200,c_crop"},
		"public_id": {"sample_image"},
		"timestamp": {"1315060510"},
		"api_key":   {"ignored"},
		"file":      {"ignored"},
	}
	const want = "bfd09f95f331f558cbd1320e67aa8d488770583e"
	got, toSign := Sign(params, "abcd")
	if got != want {
		t.Errorf("fakeSign = %s (signed %q), want %s", got, toSign, want)
	}
	if wantToSign := "eager=w_400,h_300,c_pad|w_260,h_200,c_crop&public_id=sample_image&timestamp=1315060510"; toSign != wantToSign {
		t.Errorf("string to sign = %q, want %q", toSign, wantToSign)
	}
	sdk, err := api.SignParameters(url.Values{
		"eager":     {"w_400,h_300,c_pad|w_260,h_200,c_crop"},
		"public_id": {"sample_image"},
		"timestamp": {"1315060510"},
	}, "abcd")
	if err != nil || sdk != want {
		t.Errorf("api.SignParameters = %s, %v; want %s", sdk, err, want)
	}
}

func TestFakeSignatureVersion2EscapesAmpersand(t *testing.T) {
	t.Parallel()
	params := url.Values{"public_id": {"a&b"}, "tags[0]": {"x"}, "tags[1]": {"y&z"}, "timestamp": {"1700000000"}}
	got, toSign := Sign(params, APISecret)
	if want := "public_id=a%26b&tags=x,y%26z&timestamp=1700000000"; toSign != want {
		t.Errorf("string to sign = %q, want %q", toSign, want)
	}
	sdk, err := api.SignParameters(url.Values{"public_id": {"a&b"}, "tags": {"x,y&z"}, "timestamp": {"1700000000"}}, APISecret)
	if err != nil || sdk != got {
		t.Errorf("api.SignParameters = %s, %v; fakeSign = %s", sdk, err, got)
	}
}

func TestFakeCloudinarySDKUpload(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	pic := fakeTestPNG(t, 7, 5)

	res, err := up.Upload(context.Background(), bytes.NewReader(pic), cldupload.UploadParams{
		PublicID: "x", Tags: []string{"a", "b"}, Folder: "f",
	})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if res.Error.Message != "" {
		t.Fatalf("Upload error: %s", res.Error.Message)
	}
	if got, want := res.PublicID, "f/x"; got != want {
		t.Errorf("public_id = %q, want %q", got, want)
	}
	if got, want := []string(res.Tags), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("tags = %q, want %q", got, want)
	}
	if res.Width != 7 || res.Height != 5 || res.Format != "png" || res.ResourceType != "image" {
		t.Errorf("width, height, format, resource_type = %d, %d, %q, %q; want 7, 5, png, image",
			res.Width, res.Height, res.Format, res.ResourceType)
	}
	if got, want := res.Bytes, len(pic); got != want {
		t.Errorf("bytes = %d, want %d", got, want)
	}
	if res.AssetFolder != "f" || res.Type != "upload" || res.OriginalFilename != "file" {
		t.Errorf("asset_folder, type, original_filename = %q, %q, %q", res.AssetFolder, res.Type, res.OriginalFilename)
	}
	wantURL := fmt.Sprintf("https://res.cloudinary.com/%s/image/upload/v%d/f/x.png", CloudName, res.Version)
	if res.SecureURL != wantURL || res.URL != "http"+strings.TrimPrefix(wantURL, "https") {
		t.Errorf("secure_url, url = %q, %q; want %q", res.SecureURL, res.URL, wantURL)
	}
	if len(res.AssetID) != 32 || res.CreatedAt.IsZero() {
		t.Errorf("asset_id %q, created_at %v", res.AssetID, res.CreatedAt)
	}
	if !up.VerifyApiResponseSignature(res.PublicID, strconv.Itoa(res.Version), res.Signature) {
		t.Errorf("response signature %q does not verify", res.Signature)
	}
	if m := fakeTestRaw(t, res); m["api_key"] != APIKey || m["placeholder"] != false {
		t.Errorf("raw response = %v", m)
	}

	ups := f.Uploads()
	if len(ups) != 1 {
		t.Fatalf("uploads() = %d, want 1", len(ups))
	}
	sum := sha256.Sum256(pic)
	if got, want := ups[0].SHA256, hex.EncodeToString(sum[:]); got != want {
		t.Errorf("sha256 = %s, want %s", got, want)
	}
	if got := ups[0].Tags(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("upload.Tags() = %q", got)
	}
	if ups[0].Params.Get("public_id") != "x" || ups[0].Params.Get("api_key") != APIKey || ups[0].Chunks != nil {
		t.Errorf("recorded params %v, chunks %v", ups[0].Params, ups[0].Chunks)
	}
	if ups[0].Header.Get("Content-Length") != "" || ups[0].Bytes != int64(len(pic)) {
		t.Errorf("header %v, bytes %d", ups[0].Header, ups[0].Bytes)
	}
	if f.RequestCount() != 1 || f.MaxFileBytesSeen() != int64(len(pic)) {
		t.Errorf("requestCount %d, maxFileBytesSeen %d", f.RequestCount(), f.MaxFileBytesSeen())
	}
	select {
	case <-f.FirstBytes:
	default:
		t.Error("no firstBytes signal")
	}
}

func TestFakeCloudinaryRawFile(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	res, err := up.Upload(context.Background(), strings.NewReader("hello, world"), cldupload.UploadParams{
		FilenameOverride: "notes.TXT",
	})
	if err != nil || res.Error.Message != "" {
		t.Fatalf("Upload: %v, %q", err, res.Error.Message)
	}
	if res.ResourceType != "raw" || res.Width != 0 || res.OriginalFilename != "notes" || len(res.PublicID) != 20 {
		t.Errorf("resource_type %q, width %d, original_filename %q, public_id %q", res.ResourceType, res.Width, res.OriginalFilename, res.PublicID)
	}
	m := fakeTestRaw(t, res)
	if _, ok := m["width"]; ok || len(res.Tags) != 0 {
		t.Errorf("raw response has width or tags: %v", m)
	}
	if tags, ok := m["tags"].([]any); !ok || len(tags) != 0 {
		t.Errorf("tags = %#v, want []", m["tags"])
	}
}

func TestFakeCloudinaryWrongSecret(t *testing.T) {
	f := New(t)
	wrong := strings.Replace(f.CloudinaryURL(), APISecret, "not-the-secret", 1)
	up := newFakeTestUploader(t, wrong)
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	res, err := up.Upload(context.Background(), bytes.NewReader(fakeTestPNG(t, 2, 2)), cldupload.UploadParams{PublicID: "x"})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if msg := res.Error.Message; !strings.HasPrefix(msg, "Invalid Signature ") || !strings.Contains(msg, "String to sign - 'public_id=x&timestamp=") {
		t.Errorf("error message = %q", msg)
	}
	if len(f.Uploads()) != 0 || f.RequestCount() != 1 {
		t.Errorf("uploads %d, requests %d", len(f.Uploads()), f.RequestCount())
	}
}

func TestFakeCloudinaryErrors(t *testing.T) {
	t.Parallel()
	f := New(t)
	pic := fakeTestPNG(t, 2, 2)
	stale := strconv.FormatInt(time.Now().Add(-2*time.Hour).Unix(), 10)
	tests := []struct {
		name       string
		cloud      string
		fields     url.Values
		key        string // api_key sent; "" sends none
		badSig     bool
		file       []byte // nil: no file part
		resType    string
		wantStatus int
		wantPrefix string
	}{
		{name: "unknown_cloud", cloud: "other", file: pic, wantStatus: 401, wantPrefix: "Invalid cloud_name other"},
		{name: "wrong_api_key", key: "999", file: pic, wantStatus: 401, wantPrefix: "Unknown API key 999"},
		{name: "missing_api_key", key: "-", file: pic, wantStatus: 401, wantPrefix: "Unknown API key "},
		{name: "bad_signature", badSig: true, file: pic, wantStatus: 401, wantPrefix: "Invalid Signature 0000. String to sign - 'public_id=p&timestamp="},
		{name: "stale_timestamp", fields: url.Values{"timestamp": {stale}}, file: pic, wantStatus: 400, wantPrefix: "Stale request - reported time is "},
		{name: "no_file", wantStatus: 400, wantPrefix: "Missing required parameter - file"},
		{name: "empty_file", file: []byte{}, wantStatus: 400, wantPrefix: "Empty file"},
		{name: "not_an_image_on_image_endpoint", file: []byte("plain text"), resType: "image", wantStatus: 400, wantPrefix: "Invalid image file"},
		{name: "png_on_image_endpoint", file: pic, resType: "image", wantStatus: 200},
		{name: "png_on_raw_endpoint", file: pic, resType: "raw", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fields := url.Values{"public_id": {"p"}}
			for k, v := range tt.fields {
				fields[k] = v
			}
			req := fakeTestRequest{cloud: tt.cloud, resourceType: tt.resType, fields: fields, file: tt.file, key: tt.key}
			if tt.badSig {
				req.signature = "0000"
			}
			status, header, body := req.post(t, f)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", status, tt.wantStatus, body)
			}
			if got := header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var e struct {
				Error *struct{ Message string } `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			switch {
			case tt.wantStatus == 200 && e.Error != nil:
				t.Errorf("unexpected error %q", e.Error.Message)
			case tt.wantStatus != 200 && (e.Error == nil || !strings.HasPrefix(e.Error.Message, tt.wantPrefix)):
				t.Errorf("body %s, want message starting %q", body, tt.wantPrefix)
			}
		})
	}
}

func TestFakeCloudinaryStaleTimestampThroughSDK(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	res, err := up.Upload(context.Background(), bytes.NewReader(fakeTestPNG(t, 1, 1)), cldupload.UploadParams{
		Timestamp: time.Now().Add(-61 * time.Minute).Unix(),
	})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if !strings.HasPrefix(res.Error.Message, "Stale request - reported time is ") ||
		!strings.HasSuffix(res.Error.Message, " which is more than 1 hour ago") {
		t.Errorf("error message = %q", res.Error.Message)
	}
}

func TestFakeCloudinaryOverwriteFalse(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	upload := func(overwrite *bool, w int) map[string]any {
		t.Helper()
		res, err := up.Upload(context.Background(), bytes.NewReader(fakeTestPNG(t, w, 1)), cldupload.UploadParams{
			PublicID: "dup", Overwrite: overwrite,
		})
		if err != nil || res.Error.Message != "" {
			t.Fatalf("Upload: %v, %q", err, res.Error.Message)
		}
		return fakeTestRaw(t, res)
	}
	first := upload(api.Bool(false), 3)
	second := upload(api.Bool(false), 4)
	if first["existing"] != nil || second["existing"] != true {
		t.Errorf("existing = %v, %v; want absent, true", first["existing"], second["existing"])
	}
	if second["width"] != float64(3) || second["asset_id"] != first["asset_id"] || second["version"] != first["version"] {
		t.Errorf("second answer %v is not the existing resource %v", second, first)
	}
	third := upload(nil, 5) // overwrite defaults to true for signed uploads
	if third["overwritten"] != true || third["width"] != float64(5) || third["asset_id"] != first["asset_id"] {
		t.Errorf("third answer %v", third)
	}
	if v1, v3 := first["version"].(float64), third["version"].(float64); v3 <= v1 {
		t.Errorf("version did not grow: %v then %v", v1, v3)
	}
	if got := len(f.Uploads()); got != 3 {
		t.Errorf("uploads() = %d, want 3", got)
	}
}

func TestFakeCloudinaryChunked(t *testing.T) {
	t.Parallel()
	f := New(t)
	first := make([]byte, MinChunkBytes)
	if _, err := rand.Read(first); err != nil {
		t.Fatal(err)
	}
	last := []byte("the last chunk, shorter than 5 MiB")
	total := len(first) + len(last)
	ranges := []string{
		fmt.Sprintf("bytes 0-%d/-1", len(first)-1),
		fmt.Sprintf("bytes %d-%d/%d", len(first), total-1, total),
	}
	chunk := func(rng, id string, data []byte) fakeTestRequest {
		return fakeTestRequest{
			fields:   url.Values{"public_id": {"big"}, "tags": {"t1, t2"}},
			Filename: "big.bin",
			file:     data,
			Header:   http.Header{"Content-Range": {rng}, "X-Unique-Upload-Id": {id}},
		}
	}

	status, _, body := chunk(ranges[0], "u1", first).post(t, f)
	if status != 200 || string(body) != `{"done":false}` {
		t.Fatalf("first chunk: %d %s", status, body)
	}
	if len(f.Uploads()) != 0 {
		t.Fatal("a non-final chunk was recorded as an upload")
	}
	// A chunk that does not start where the previous one ended is refused, and changes nothing.
	status, _, body = chunk(fmt.Sprintf("bytes 1-%d/%d", len(last), len(last)+1), "u1", last).post(t, f)
	if status != 400 || !strings.Contains(string(body), "Invalid Content-Range") {
		t.Errorf("misplaced chunk: %d %s", status, body)
	}
	status, _, body = chunk(ranges[1], "u1", last).post(t, f)
	if status != 200 {
		t.Fatalf("last chunk: %d %s", status, body)
	}
	var res struct {
		Bytes        int64    `json:"bytes"`
		PublicID     string   `json:"public_id"`
		ResourceType string   `json:"resource_type"`
		Format       string   `json:"format"`
		Tags         []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if res.Bytes != int64(total) || res.PublicID != "big" || res.ResourceType != "raw" || res.Format != "bin" || !slices.Equal(res.Tags, []string{"t1", "t2"}) {
		t.Errorf("result %+v", res)
	}
	ups := f.Uploads()
	if len(ups) != 1 {
		t.Fatalf("uploads() = %d, want 1", len(ups))
	}
	sum := sha256.Sum256(append(slices.Clone(first), last...))
	if got, want := ups[0].SHA256, hex.EncodeToString(sum[:]); got != want {
		t.Errorf("sha256 = %s, want %s", got, want)
	}
	if !slices.Equal(ups[0].Chunks, ranges) || ups[0].Bytes != int64(total) || ups[0].Filename != "big.bin" {
		t.Errorf("chunks %q, bytes %d, filename %q", ups[0].Chunks, ups[0].Bytes, ups[0].Filename)
	}

	status, _, body = chunk("bytes 0-1023/-1", "u2", make([]byte, 1024)).post(t, f)
	if status != 400 || !strings.Contains(string(body), "All parts except EOF-chunk must be larger than 5mb") {
		t.Errorf("small non-final chunk: %d %s", status, body)
	}
	status, _, body = chunk("bytes 0-9/-1", "u3", make([]byte, 5)).post(t, f)
	if status != 400 || !strings.Contains(string(body), "Invalid Content-Range") {
		t.Errorf("range longer than the chunk: %d %s", status, body)
	}
}

func TestFakeCloudinaryFailTimes(t *testing.T) {
	f := New(t)
	f.SetBehaviour(Behaviour{Status: 500, Body: `{"error":{"message":"General Error"}}`, FailTimes: 1})
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	pic := fakeTestPNG(t, 2, 2)
	res, err := up.Upload(context.Background(), bytes.NewReader(pic), cldupload.UploadParams{})
	if err != nil || res.Error.Message != "General Error" {
		t.Fatalf("first Upload: %v, %q", err, res.Error.Message)
	}
	res, err = up.Upload(context.Background(), bytes.NewReader(pic), cldupload.UploadParams{})
	if err != nil || res.Error.Message != "" || res.Width != 2 {
		t.Fatalf("second Upload: %v, %q", err, res.Error.Message)
	}
	if f.RequestCount() != 2 || len(f.Uploads()) != 1 {
		t.Errorf("requests %d, uploads %d", f.RequestCount(), len(f.Uploads()))
	}
}

func TestFakeCloudinaryHTMLAnswer(t *testing.T) {
	f := New(t)
	f.SetBehaviour(Behaviour{Status: 502, Body: "<html>Bad Gateway</html>", ContentType: "text/html"})
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	_, err := up.Upload(context.Background(), bytes.NewReader(fakeTestPNG(t, 1, 1)), cldupload.UploadParams{})
	var syntaxErr *json.SyntaxError
	if !errors.As(err, &syntaxErr) {
		t.Errorf("Upload error = %v, want a *json.SyntaxError", err)
	}
}

func TestFakeCloudinaryReset(t *testing.T) {
	f := New(t)
	f.SetBehaviour(Behaviour{Reset: true})
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	if _, err := up.Upload(context.Background(), bytes.NewReader(fakeTestPNG(t, 1, 1)), cldupload.UploadParams{}); err == nil {
		t.Error("Upload succeeded through a reset connection")
	}
	if len(f.Uploads()) != 0 {
		t.Error("a reset request was recorded")
	}
}

func TestFakeCloudinaryHangEndsWithClientContext(t *testing.T) {
	f := New(t)
	f.SetBehaviour(Behaviour{Hang: true})
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	pic := fakeTestPNG(t, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := up.Upload(ctx, bytes.NewReader(pic), cldupload.UploadParams{})
		done <- err
	}()
	<-f.FirstBytes
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Upload error = %v, want context.Canceled", err)
	}
}

func TestFakeCloudinaryAbortedBody(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := up.Upload(context.Background(), pr, cldupload.UploadParams{})
		done <- err
	}()
	if _, err := pw.Write(bytes.Repeat([]byte("x"), 64<<10)); err != nil {
		t.Fatal(err)
	}
	<-f.FirstBytes
	pw.CloseWithError(errors.New("browser went away"))
	if err := <-f.Aborted; err == nil {
		t.Error("aborted carried a nil error")
	}
	if err := <-done; err == nil {
		t.Error("Upload succeeded with a broken body")
	}
	if len(f.Uploads()) != 0 {
		t.Error("an aborted request was recorded")
	}
	if got := f.MaxFileBytesSeen(); got <= 0 || got > 64<<10 {
		t.Errorf("maxFileBytesSeen = %d", got)
	}
}

func TestFakeCloudinaryTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 100 MiB")
	}
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	size := int64(MaxFileBytes + 1)
	res, err := up.Upload(context.Background(), io.LimitReader(fakeZeroReader{}, size), cldupload.UploadParams{})
	if err != nil {
		t.Fatalf("Upload: %v", err)
	}
	if want := fmt.Sprintf("File size too large. Got %d. Maximum is %d.", size, MaxFileBytes); res.Error.Message != want {
		t.Errorf("error message = %q, want %q", res.Error.Message, want)
	}
	if got := f.MaxFileBytesSeen(); got != size {
		t.Errorf("maxFileBytesSeen = %d, want %d", got, size)
	}
}

func TestFakeCloudinaryConcurrentUploads(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel() // after config.NewFromURL, which is unsafe for concurrent use
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		pic := fakeTestPNG(t, i+1, 1)
		wg.Go(func() {
			res, err := up.Upload(context.Background(), bytes.NewReader(pic), cldupload.UploadParams{
				PublicID: fmt.Sprintf("c%d", i),
			})
			switch {
			case err != nil:
				errs <- err.Error()
			case res.Error.Message != "":
				errs <- res.Error.Message
			case res.Width != i+1:
				errs <- fmt.Sprintf("c%d: width %d", i, res.Width)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	ids := make([]string, 0, n)
	for _, u := range f.Uploads() {
		ids = append(ids, u.Params.Get("public_id"))
	}
	sort.Strings(ids)
	if want := []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"}; !slices.Equal(ids, want) {
		t.Errorf("uploaded %q, want %q", ids, want)
	}
}

// newFakeTestUploader is the SDK's uploader for url (testkit.SDKUploader: call it before t.Parallel).
func newFakeTestUploader(t *testing.T, cldURL string) *cldupload.API {
	t.Helper()
	return testkit.SDKUploader(t, cldURL)
}

// fakeTestRaw is the decoded JSON object the SDK keeps in UploadResult.Response.
func fakeTestRaw(t *testing.T, res *cldupload.UploadResult) map[string]any {
	t.Helper()
	m, ok := res.Response.(*map[string]any)
	if !ok || m == nil {
		t.Fatalf("Response is %T", res.Response)
	}
	return *m
}

func fakeTestPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	return testkit.PNG(t, w, h)
}

type fakeZeroReader struct{}

func (fakeZeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// fakeTestRequest is a hand-built upload request, signed like the SDK signs one.
type fakeTestRequest struct {
	cloud        string // default CloudName
	resourceType string // default auto
	fields       url.Values
	key          string // default APIKey; "-" sends none
	signature    string // default: the right one
	Filename     string // default "file"
	file         []byte // nil: no file part
	Header       http.Header
}

func (r fakeTestRequest) post(t *testing.T, f *Server) (int, http.Header, []byte) {
	t.Helper()
	fields := fakeCloneValues(r.fields)
	if fields == nil {
		fields = url.Values{}
	}
	if fields.Get("timestamp") == "" {
		fields.Set("timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	}
	sig, err := api.SignParameters(fakeCloneValues(fields), APISecret)
	if err != nil {
		t.Fatal(err)
	}
	if r.signature != "" {
		sig = r.signature
	}
	fields.Set("signature", sig)
	switch r.key {
	case "":
		fields.Set("api_key", APIKey)
	case "-":
	default:
		fields.Set("api_key", r.key)
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := mw.WriteField(k, fields.Get(k)); err != nil {
			t.Fatal(err)
		}
	}
	if r.file != nil {
		name := r.Filename
		if name == "" {
			name = "file"
		}
		part, err := mw.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := part.Write(r.file); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}

	cloud, resourceType := r.cloud, r.resourceType
	if cloud == "" {
		cloud = CloudName
	}
	if resourceType == "" {
		resourceType = "auto"
	}
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1_1/%s/%s/upload", f.URL(), cloud, resourceType), &body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := f.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// With Options.Serve the fake keeps each file, a single request's or a chunked upload's, and
// serves it back at the secure_url it answered; OnUpload hears of each upload as it is accepted.
func TestFakeCloudinaryServesStoredFiles(t *testing.T) {
	t.Parallel()
	heard := make(chan Upload, 4)
	f, err := StartWith(Options{Serve: true, OnUpload: func(u Upload) { heard <- u }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	get := func(u string) (int, []byte) {
		t.Helper()
		resp, err := f.Client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	var res struct {
		PublicID  string `json:"public_id"`
		SecureURL string `json:"secure_url"`
		URL       string `json:"url"`
	}

	pic := fakeTestPNG(t, 6, 4)
	status, _, body := fakeTestRequest{fields: url.Values{"public_id": {"trip/one"}}, file: pic}.post(t, f)
	if status != 200 {
		t.Fatalf("upload: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.SecureURL, f.URL()+"/"+CloudName+"/image/upload/v") || !strings.HasSuffix(res.SecureURL, "/trip/one.png") || res.URL != res.SecureURL {
		t.Errorf("secure_url %q, url %q: want the fake's own delivery URL", res.SecureURL, res.URL)
	}
	if got, data := get(res.SecureURL); got != 200 || !bytes.Equal(data, pic) {
		t.Errorf("GET secure_url: %d, %d bytes; want the %d bytes sent", got, len(data), len(pic))
	}
	select {
	case u := <-heard:
		if u.Params.Get("public_id") != "trip/one" || u.Bytes != int64(len(pic)) {
			t.Errorf("OnUpload heard %+v", u)
		}
	default:
		t.Error("OnUpload was not called before the answer")
	}

	first := make([]byte, MinChunkBytes)
	if _, err := rand.Read(first); err != nil {
		t.Fatal(err)
	}
	last := []byte("the end")
	total := len(first) + len(last)
	for _, c := range []struct {
		rng  string
		data []byte
	}{{fmt.Sprintf("bytes 0-%d/-1", len(first)-1), first}, {fmt.Sprintf("bytes %d-%d/%d", len(first), total-1, total), last}} {
		status, _, body = fakeTestRequest{fields: url.Values{"public_id": {"big"}}, Filename: "big.bin", file: c.data,
			Header: http.Header{"Content-Range": {c.rng}, "X-Unique-Upload-Id": {"u1"}}}.post(t, f)
		if status != 200 {
			t.Fatalf("chunk %s: %d %s", c.rng, status, body)
		}
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	if got, data := get(res.SecureURL); got != 200 || !bytes.Equal(data, append(slices.Clone(first), last...)) {
		t.Errorf("GET the chunked upload's secure_url %s: %d, %d bytes; want the %d sent", res.SecureURL, got, len(data), total)
	}
	if got, _ := get(f.URL() + "/" + CloudName + "/image/upload/v1/nothing.png"); got != http.StatusNotFound {
		t.Errorf("GET a file never stored: %d, want 404", got)
	}
	if len(heard) != 1 {
		t.Errorf("OnUpload heard %d more uploads, want the chunked one only once", len(heard))
	}
}

// The context parameter as Cloudinary's SDKs write it (key=value pairs joined by '|', with '=',
// '|' and '\' in a value escaped by '\'), read back as the answer's context.custom.
func TestFakeParseContext(t *testing.T) {
	for raw, want := range map[string]map[string]string{
		"alt=a cat":                        {"alt": "a cat"},
		`alt=a\|b\=c|uploaded_by=auth0\|x`: {"alt": "a|b=c", "uploaded_by": "auth0|x"},
		`k=back\\slash`:                    {"k": `back\slash`},
		"":                                 {},
		"novalue":                          {"novalue": ""},
	} {
		got := fakeParseContext(raw)
		if len(got) != len(want) {
			t.Errorf("fakeParseContext(%q) = %v, want %v", raw, got, want)
			continue
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("fakeParseContext(%q)[%q] = %q, want %q", raw, k, got[k], v)
			}
		}
	}
}
