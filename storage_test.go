package main

import (
	"strings"
	"testing"
)

func TestStorageChoice(t *testing.T) {
	fake := newFakeCloudinary(t)
	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantStore string
	}{
		{"auto_without_credentials_is_local", map[string]string{}, "local"},
		{"auto_with_credentials_is_cloudinary", map[string]string{"CLOUDINARY_URL": fake.CloudinaryURL()}, "cloudinary"},
		{"local_even_with_credentials", map[string]string{"STORAGE": "local", "CLOUDINARY_URL": fake.CloudinaryURL()}, "local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := localEnv(t)
			for k, v := range tc.env {
				env[k] = v
			}
			srv := startServer(t, env)
			var lines []map[string]any
			for _, e := range srv.logs.entries(t) {
				if _, ok := e["store"]; ok {
					lines = append(lines, e)
				}
			}
			if len(lines) != 1 || lines[0]["store"] != tc.wantStore {
				t.Fatalf("start-up store lines %v, want one naming %s", lines, tc.wantStore)
			}
			if tc.wantStore == "local" && lines[0]["dir"] != env["UPLOAD_DIR"] {
				t.Errorf("dir = %v, want %s", lines[0]["dir"], env["UPLOAD_DIR"])
			}
		})
	}
	_, err := loadConfig(mapGetenv(map[string]string{"STORAGE": "s3"}))
	if err == nil || !strings.Contains(err.Error(), "STORAGE") {
		t.Errorf("STORAGE=s3: %v, want an error naming STORAGE", err)
	}
}
