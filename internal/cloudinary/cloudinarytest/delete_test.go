package cloudinarytest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudinary/cloudinary-go/v2/api"
	cldupload "github.com/cloudinary/cloudinary-go/v2/api/uploader"
)

// The SDK's Destroy, signed as the SDK signs it, removes the asset; a second one finds nothing;
// a wrong signature or a wrong resource type deletes nothing.
func TestFakeDestroyThroughSDK(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	wrong := newFakeTestUploader(t, strings.Replace(f.CloudinaryURL(), APISecret, "not-the-secret", 1))
	t.Parallel()
	ctx := context.Background()
	res, err := up.Upload(ctx, bytes.NewReader(fakeTestPNG(t, 3, 2)), cldupload.UploadParams{PublicID: "d/x"})
	if err != nil || res.Error.Message != "" {
		t.Fatalf("Upload: %v %s", err, res.Error.Message)
	}

	bad, err := wrong.Destroy(ctx, cldupload.DestroyParams{PublicID: "d/x"})
	if err != nil || !strings.HasPrefix(bad.Error.Message, "Invalid Signature") {
		t.Errorf("wrong secret: %+v, %v; want Invalid Signature", bad, err)
	}
	other, err := up.Destroy(ctx, cldupload.DestroyParams{PublicID: "d/x", ResourceType: "raw"})
	if err != nil || other.Result != "not found" {
		t.Errorf("raw destroy of an image: %+v, %v; want not found", other, err)
	}
	if _, ok := f.Asset("d/x"); !ok {
		t.Fatal("the asset went after refused destroys")
	}

	got, err := up.Destroy(ctx, cldupload.DestroyParams{PublicID: "d/x", Invalidate: api.Bool(true)})
	if err != nil || got.Result != "ok" {
		t.Fatalf("Destroy: %+v, %v; want ok", got, err)
	}
	if _, ok := f.Asset("d/x"); ok {
		t.Error("the asset is still there after destroy")
	}
	again, err := up.Destroy(ctx, cldupload.DestroyParams{PublicID: "d/x"})
	if err != nil || again.Result != "not found" {
		t.Errorf("second Destroy: %+v, %v; want not found", again, err)
	}
}

// return_delete_token (signed like the other parameters, here by the SDK) brings a delete_token,
// which delete_by_token takes unsigned for 10 minutes on the fake's clock, and never after.
func TestFakeDeleteByToken(t *testing.T) {
	f := New(t)
	up := newFakeTestUploader(t, f.CloudinaryURL())
	t.Parallel()
	var offset time.Duration
	f.SetClock(func() time.Time { return time.Now().Add(offset) })
	upload := func(id string) string {
		res, err := up.Upload(context.Background(), bytes.NewReader(fakeTestPNG(t, 3, 2)),
			cldupload.UploadParams{PublicID: id, ReturnDeleteToken: api.Bool(true)})
		if err != nil || res.Error.Message != "" {
			t.Fatalf("Upload: %v %s", err, res.Error.Message)
		}
		tok, _ := fakeTestRaw(t, res)["delete_token"].(string)
		if tok == "" {
			t.Fatalf("no delete_token in %v", fakeTestRaw(t, res))
		}
		return tok
	}
	deleteByToken := func(token string) (int, map[string]any) {
		t.Helper()
		resp, err := f.Client().PostForm(f.URL()+"/v1_1/"+CloudName+"/delete_by_token", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}

	tok := upload("t/a")
	wrong := "0" + tok[1:]
	if tok[0] == '0' { // else the "wrong" token would be the token itself, one time in 16
		wrong = "1" + tok[1:]
	}
	if status, m := deleteByToken(wrong); status != http.StatusUnauthorized || m["error"] == nil {
		t.Errorf("wrong token: %d %v; want 401 in the error shape", status, m)
	}
	if status, m := deleteByToken(tok); status != http.StatusOK || m["result"] != "ok" {
		t.Errorf("token: %d %v; want 200 ok", status, m)
	}
	if _, ok := f.Asset("t/a"); ok {
		t.Error("the asset is still there")
	}
	if status, m := deleteByToken(tok); status != http.StatusOK || m["result"] != "not found" {
		t.Errorf("token again: %d %v; want 200 not found", status, m)
	}

	late := upload("t/b")
	offset = DeleteTokenTTL + time.Second
	if status, m := deleteByToken(late); status != http.StatusUnauthorized || m["error"] == nil {
		t.Errorf("expired token: %d %v; want 401", status, m)
	}
	if _, ok := f.Asset("t/b"); !ok {
		t.Error("an expired token deleted the asset")
	}
	plain, err := up.Upload(context.Background(), bytes.NewReader(fakeTestPNG(t, 3, 2)), cldupload.UploadParams{PublicID: "t/c"})
	if err != nil || fakeTestRaw(t, plain)["delete_token"] != nil {
		t.Errorf("an upload without return_delete_token: %v, %v", err, fakeTestRaw(t, plain))
	}
}
