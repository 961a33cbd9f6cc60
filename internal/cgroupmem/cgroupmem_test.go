package cgroupmem

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// tree writes files (path → content) under a new root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	v2Mount     = "30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	v1Mount     = "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	hybridMount = "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)

func TestLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		from  string
	}{
		{"v2_in_a_namespace", map[string]string{ // Docker, Fly, Cloud Run: the container's cgroup is the root
			"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": v2Mount,
			"sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n", "sys/fs/cgroup/memory.max": "268435456\n",
		}, 256 << 20, "/sys/fs/cgroup/memory.max"},
		{"v2_parent_binds", map[string]string{ // systemd: the slice above the service has the limit
			"proc/self/cgroup": "0::/app.slice/web.service\n", "proc/self/mountinfo": v2Mount,
			"sys/fs/cgroup/cgroup.controllers":               "memory\n",
			"sys/fs/cgroup/app.slice/memory.max":             "536870912\n",
			"sys/fs/cgroup/app.slice/web.service/memory.max": "max\n",
		}, 512 << 20, "/sys/fs/cgroup/app.slice/memory.max"},
		{"v2_smallest_of_two", map[string]string{
			"proc/self/cgroup": "0::/a/b\n", "proc/self/mountinfo": v2Mount,
			"sys/fs/cgroup/cgroup.controllers": "memory\n",
			"sys/fs/cgroup/a/memory.max":       "1073741824\n", "sys/fs/cgroup/a/b/memory.max": "268435456\n",
		}, 256 << 20, "/sys/fs/cgroup/a/b/memory.max"},
		{"v2_max", map[string]string{
			"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": v2Mount,
			"sys/fs/cgroup/cgroup.controllers": "memory\n", "sys/fs/cgroup/memory.max": "max\n",
		}, 0, ""},
		{"v2_mount_of_a_subtree", map[string]string{ // a bind mount that shows /kubepods/pod1 at the mount point
			"proc/self/cgroup":                 "0::/kubepods/pod1/c1\n",
			"proc/self/mountinfo":              "30 22 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			"sys/fs/cgroup/cgroup.controllers": "memory\n", "sys/fs/cgroup/c1/memory.max": "134217728\n",
		}, 128 << 20, "/sys/fs/cgroup/c1/memory.max"},
		{"v2_cgroup_outside_the_mount", map[string]string{
			"proc/self/cgroup":                 "0::/elsewhere\n",
			"proc/self/mountinfo":              "30 22 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			"sys/fs/cgroup/cgroup.controllers": "memory\n", "sys/fs/cgroup/memory.max": "134217728\n",
		}, 0, ""},
		{"v1", map[string]string{
			"proc/self/cgroup": "4:memory:/docker/abc\n1:cpu:/docker/abc\n", "proc/self/mountinfo": v1Mount,
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "268435456\n",
		}, 256 << 20, "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes"},
		{"v1_no_limit", map[string]string{
			"proc/self/cgroup": "4:memory:/\n", "proc/self/mountinfo": v1Mount,
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, ""},
		{"hybrid_without_memory_in_v2", map[string]string{ // systemd's hybrid layout: memory is a v1 controller
			"proc/self/cgroup": "4:memory:/user.slice\n0::/user.slice\n", "proc/self/mountinfo": v1Mount + hybridMount,
			"sys/fs/cgroup/unified/cgroup.controllers":              "\n",
			"sys/fs/cgroup/memory/user.slice/memory.limit_in_bytes": "1073741824\n",
		}, 1 << 30, "/sys/fs/cgroup/memory/user.slice/memory.limit_in_bytes"},
		{"escaped_mount_point", map[string]string{
			"proc/self/cgroup":                   "0::/\n",
			"proc/self/mountinfo":                `30 22 0:26 / /sys/fs/cgroup\040x rw - cgroup2 cgroup2 rw` + "\n",
			"sys/fs/cgroup x/cgroup.controllers": "memory\n", "sys/fs/cgroup x/memory.max": "268435456\n",
		}, 256 << 20, "/sys/fs/cgroup x/memory.max"},
		{"no_proc", map[string]string{}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, err := Limit(tree(t, tc.files))
			if err != nil || got != tc.want || from != tc.from {
				t.Errorf("Limit = %d %q %v, want %d %q", got, from, err, tc.want, tc.from)
			}
		})
	}
}

func TestLimitRefusesGarbage(t *testing.T) {
	t.Parallel()
	root := tree(t, map[string]string{
		"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": v2Mount,
		"sys/fs/cgroup/cgroup.controllers": "memory\n", "sys/fs/cgroup/memory.max": "lots\n",
	})
	if _, _, err := Limit(root); err == nil {
		t.Errorf("a memory.max of %q was taken", "lots")
	}
}

// TestLimitAgreesWithAutomemlimit reads this machine's own cgroup as github.com/KimMachineGun/
// automemlimit, the library most Go programs use for this, reads it.
func TestLimitAgreesWithAutomemlimit(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("cgroups are Linux's")
	}
	ours, from, err := Limit("/")
	if err != nil {
		t.Fatal(err)
	}
	theirs, theirErr := memlimit.FromCgroup()
	switch {
	case theirErr != nil && !errors.Is(theirErr, memlimit.ErrNoLimit) && !errors.Is(theirErr, memlimit.ErrNoCgroup):
		t.Logf("automemlimit cannot read this machine's cgroup (%v); ours: %d from %q", theirErr, ours, from)
		if ours != 0 {
			t.Errorf("ours found a limit where automemlimit found none it could read")
		}
	case theirErr != nil:
		if ours != 0 {
			t.Errorf("ours: %d from %q; automemlimit: %v", ours, from, theirErr)
		}
	case int64(theirs) != ours:
		t.Errorf("ours: %d from %q; automemlimit: %d", ours, from, theirs)
	}
}
