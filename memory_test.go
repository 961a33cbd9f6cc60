package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	envconfig "cloudinary-upload-api/internal/config"
)

// cgroupV2Root is a machine whose process sits in a cgroup v2 with a memory.max of limit bytes.
func cgroupV2Root(t *testing.T, limit string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range map[string]string{
		"proc/self/cgroup":                 "0::/\n",
		"proc/self/mountinfo":              "30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
		"sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n",
		"sys/fs/cgroup/memory.max":         limit + "\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// memoryLine is the start-up log's memory line.
func memoryLine(t *testing.T, srv *testServer) map[string]any {
	t.Helper()
	for _, e := range srv.logs.entries(t) {
		if msg, _ := e["msg"].(string); strings.HasPrefix(msg, "memory: ") {
			return e
		}
	}
	t.Fatalf("no memory line in the log:\n%s", srv.logs)
	return nil
}

// TestMemoryFromTheContainer: in a container limited to 256 MiB, without UPLOAD_MEMORY, the server
// takes half (128 MiB) for the uploads, keeps the Go memory limit within the container, and says
// so in one line.
func TestMemoryFromTheContainer(t *testing.T) {
	fake := newFakeCloudinary(t)
	srv := startServer(t, baseEnv(t, fake), withCgroupRoot(cgroupV2Root(t, "268435456")))
	e := memoryLine(t, srv)
	msg := e["msg"].(string)
	if e["upload_memory"] != float64(128<<20) || !strings.Contains(msg, "UPLOAD_MEMORY=128MiB, half of the container's memory limit of 256MiB (/sys/fs/cgroup/memory.max)") {
		t.Errorf("memory line %v, want 128 MiB as half of the 256 MiB limit", e)
	}
	if e["go_memory_limit"] != "160MiB" { // 128 MiB + 32 MiB, under 90% of 256 MiB
		t.Errorf("Go memory limit %v, want 160MiB", e["go_memory_limit"])
	}
	// The budget the server uses is that one: 128 MiB / 3.4 MiB per streamed upload.
	if status, _, msg := smallUpload(t, newClient(t), srv.url); status != 200 {
		t.Errorf("upload: %d %q", status, msg)
	}
}

func TestMemoryPlan(t *testing.T) {
	cfg := testConfig()
	for _, tc := range []struct {
		name, limit, upload string
		want, goLimit       int64
		why, warning        string
	}{
		{"no_limit", "max", "", 256 << 20, 288 << 20, "the default: no container memory limit", ""},
		{"1GiB", "1073741824", "", 512 << 20, 544 << 20, "half of the container's memory limit of 1024MiB", ""},
		{"set_and_fits", "1073741824", "256MiB", 256 << 20, 288 << 20, "UPLOAD_MEMORY is set", ""},
		// The 256 MB machine of the issue: the old default overran it; a set one is capped and warned of.
		{"set_too_big", "268435456", "256MiB", 256 << 20, 268435456 - 268435456/10, "UPLOAD_MEMORY is set", "leaves little of the container's 256MiB"},
		{"tiny_container", "33554432", "", cfg.uploadReservation(true), 33554432 - 33554432/10, "raised to", "leaves little"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.upload != "" {
				n, err := envconfig.ParseSize(tc.upload)
				if err != nil {
					t.Fatal(err)
				}
				c.UploadMemory, c.UploadMemorySet = n, true
			}
			p := planMemory(c, cgroupV2Root(t, tc.limit))
			if p.uploadMemory != tc.want || !strings.Contains(p.why, tc.why) || (tc.warning == "") != (p.warning == "") || !strings.Contains(p.warning, tc.warning) {
				t.Errorf("plan %+v, want %d because %q, warning %q", p, tc.want, tc.why, tc.warning)
			}
			if p.goLimit != tc.goLimit {
				t.Errorf("Go memory limit %d, want %d", p.goLimit, tc.goLimit)
			}
		})
	}
}
