package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
)

// The tool sets its line in a .env (keeping the others), lists each upload as it is accepted,
// and serves the file back at the secure_url it answered.
func TestFakeCloudinaryTool(t *testing.T) {
	dir := t.TempDir()
	envPath := filepath.Join(dir, ".env")
	before := "# from .env.example\n# CLOUDINARY_URL=cloudinary://API_KEY:API_SECRET@CLOUD_NAME\nPORT=9999\nCLOUDINARY_URL=cloudinary://old:old@old\n"
	if err := os.WriteFile(envPath, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-env-file", envPath}, outW)
		_ = outW.CloseWithError(io.EOF) // the reader sees the end, whatever happened
		done <- err
	}()
	lines := make(chan string, 16) // read on, so the tool never waits on the pipe
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, outR)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return after its context ended")
		}
		for range lines { // the reader ends with the pipe
		}
	})
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the tool's output ended")
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("the tool printed nothing for 10 s")
		}
		return ""
	}

	var cldURL string
	for cldURL == "" {
		if v, ok := strings.CutPrefix(next(), "CLOUDINARY_URL="); ok {
			cldURL = v
		}
	}
	env, err := os.ReadFile(envPath)
	if err != nil {
		t.Fatal(err)
	}
	want := "# from .env.example\n# CLOUDINARY_URL=cloudinary://API_KEY:API_SECRET@CLOUD_NAME\nPORT=9999\nCLOUDINARY_URL=" + cldURL + "\n"
	if string(env) != want {
		t.Errorf(".env is\n%s\nwant\n%s", env, want)
	}
	u, err := url.Parse(cldURL)
	if err != nil {
		t.Fatal(err)
	}
	base := u.Query().Get("upload_prefix")

	file := []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;") // a 1x1 GIF
	fields := url.Values{"public_id": {"tool/check"}, "timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}}
	sig, _ := cloudinarytest.Sign(fields, cloudinarytest.APISecret)
	fields.Set("signature", sig)
	fields.Set("api_key", cloudinarytest.APIKey)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k := range fields {
		if err := mw.WriteField(k, fields.Get(k)); err != nil {
			t.Fatal(err)
		}
	}
	part, err := mw.CreateFormFile("file", "check.gif")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.Write(file); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Post(base+"/v1_1/"+cloudinarytest.CloudName+"/auto/upload", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		SecureURL string `json:"secure_url"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("upload: %d, %v", resp.StatusCode, err)
	}

	sum := sha256.Sum256(file)
	wantLine := "fake-upload sha256=" + hex.EncodeToString(sum[:]) + " public_id=tool/check bytes=" + strconv.Itoa(len(file)) + " secure_url=" + answer.SecureURL
	got := next()
	for !strings.HasPrefix(got, "fake-upload ") { // past the lines of its start
		got = next()
	}
	if got != wantLine {
		t.Errorf("the tool printed %q after the upload, want %q", got, wantLine)
	}
	resp, err = client.Get(answer.SecureURL)
	if err != nil {
		t.Fatal(err)
	}
	served, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(served, file) {
		t.Errorf("GET %s: %d, %q (%v); want the file", answer.SecureURL, resp.StatusCode, served, err)
	}
}

func TestSetEnvLineCreatesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	if err := setEnvLine(path, "CLOUDINARY_URL=x"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "CLOUDINARY_URL=x\n" {
		t.Errorf("%q, %v", b, err)
	}
}
