package cloudinary_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"

	"cloudinary-upload-api/internal/cloudinary"
	"cloudinary-upload-api/internal/cloudinary/cloudinarytest"
	"cloudinary-upload-api/internal/store"
)

// Our destroy is the SDK's Destroy (with type and invalidate set): same path, same fields; the
// fake then checks our signature and removes the asset.
func TestDestroyRequestIsTheSDKs(t *testing.T) {
	type caught struct {
		path   string
		fields url.Values
	}
	var got []caught
	catcher := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		q, perr := url.ParseQuery(string(b))
		if err != nil || perr != nil {
			http.Error(w, "unreadable", http.StatusBadRequest)
			return
		}
		got = append(got, caught{r.URL.Path, q})
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"result":"ok"}`)
	}))
	t.Cleanup(catcher.Close)
	sdk := newSDKUploader(t, "cloudinary://"+cloudinarytest.APIKey+":"+cloudinarytest.APISecret+"@"+cloudinarytest.CloudName+"?upload_prefix="+url.QueryEscape(catcher.URL))
	fake := cloudinarytest.New(t)
	sdkAtFake := newSDKUploader(t, fake.CloudinaryURL())

	if _, err := sdk.Destroy(context.Background(), cldupload.DestroyParams{PublicID: "a/b c", Type: "upload", ResourceType: "video", Invalidate: api.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if err := newTestClient(t, catcher.URL, "", "", "").Destroy(context.Background(), "a/b c", "video"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("caught %d requests", len(got))
	}
	sdkReq, ours := got[0], got[1]
	for _, f := range []url.Values{sdkReq.fields, ours.fields} {
		if f.Get("timestamp") == "" || f.Get("signature") == "" {
			t.Errorf("unsigned: %v", f)
		}
		f.Del("timestamp") // each signs at its own second
		f.Del("signature")
	}
	if sdkReq.path != ours.path || !equalValues(sdkReq.fields, ours.fields) {
		t.Errorf("SDK %s %v\nours %s %v", sdkReq.path, sdkReq.fields, ours.path, ours.fields)
	}

	res, err := sdkAtFake.Upload(context.Background(), bytes.NewReader(testPNG(t, 3, 2)), cldupload.UploadParams{PublicID: "gone/soon"})
	if err != nil || res.Error.Message != "" {
		t.Fatalf("upload: %v %s", err, res.Error.Message)
	}
	c := newTestClient(t, fake.URL(), "", "", "")
	if err := c.Destroy(context.Background(), "gone/soon", "image"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, ok := fake.Asset("gone/soon"); ok {
		t.Error("the asset is still at the fake")
	}
	if err := c.Destroy(context.Background(), "gone/soon", "image"); !errors.Is(err, cloudinary.ErrNotFound) {
		t.Errorf("second Destroy: %v, want ErrNotFound", err)
	}
	wrong, err := cloudinary.ParseURL("cloudinary://" + cloudinarytest.APIKey + ":wrong@" + cloudinarytest.CloudName + "?upload_prefix=" + url.QueryEscape(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	wc, err := cloudinary.New(wrong, cloudinary.Options{ChunkSize: cloudinary.MinChunkBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wc.CloseIdleConnections)
	if err := wc.Destroy(context.Background(), "x", "image"); !errors.Is(err, cloudinary.ErrCredentials) {
		t.Errorf("wrong secret: %v, want ErrCredentials", err)
	}
}

// An upload with Params.DeleteToken answers a delete_token, which DeleteByToken spends within 10
// minutes; an expired or wrong one is ErrTokenRefused, one whose asset is gone ErrNotFound.
func TestDeleteByToken(t *testing.T) {
	fake := cloudinarytest.New(t)
	var offset time.Duration
	fake.SetClock(func() time.Time { return time.Now().Add(offset) })
	c := newTestClient(t, fake.URL(), "", "", "")
	ctx := context.Background()
	upload := func(p store.Params) (publicID, token string) {
		t.Helper()
		raw, err := c.Upload(ctx, bytes.NewReader(testPNG(t, 3, 2)), p)
		if err != nil {
			t.Fatal(err)
		}
		var a struct {
			PublicID    string `json:"public_id"`
			DeleteToken string `json:"delete_token"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		return a.PublicID, a.DeleteToken
	}
	if _, tok := upload(store.Params{}); tok != "" {
		t.Errorf("a delete_token without asking: %q", tok)
	}
	id, tok := upload(store.Params{DeleteToken: true})
	if tok == "" {
		t.Fatal("no delete_token")
	}
	if err := c.DeleteByToken(ctx, tok+"0"); !errors.Is(err, cloudinary.ErrTokenRefused) {
		t.Errorf("wrong token: %v, want ErrTokenRefused", err)
	}
	if err := c.DeleteByToken(ctx, tok); err != nil {
		t.Fatalf("DeleteByToken: %v", err)
	}
	if _, ok := fake.Asset(id); ok {
		t.Error("the asset is still at the fake")
	}
	if err := c.DeleteByToken(ctx, tok); !errors.Is(err, cloudinary.ErrNotFound) {
		t.Errorf("again: %v, want ErrNotFound", err)
	}
	id, tok = upload(store.Params{DeleteToken: true})
	offset = store.DeleteTokenTTL + time.Second
	if err := c.DeleteByToken(ctx, tok); !errors.Is(err, cloudinary.ErrTokenRefused) {
		t.Errorf("expired: %v, want ErrTokenRefused", err)
	}
	if _, ok := fake.Asset(id); !ok {
		t.Error("an expired token deleted the asset")
	}
}
