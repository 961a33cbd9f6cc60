// Package cgroupmem reads the memory limit of the control group the process runs in: what a
// container platform (Docker, Fly.io, Render, Railway, Cloud Run, Heroku) allows it before the
// kernel's OOM killer ends it.
//
// cgroup v2 (one hierarchy, fstype cgroup2) keeps the limit in memory.max, "max" for none;
// cgroup v1 keeps it in memory.limit_in_bytes of the memory controller's hierarchy, a number
// near 2^63 for none. The process's cgroup comes from /proc/self/cgroup, and where its hierarchy
// is mounted (and which part of it the mount shows, for a container with a cgroup namespace or
// a bind mount) from /proc/self/mountinfo. A limit set on a parent cgroup binds its children,
// so the smallest limit from the process's cgroup up to the mount's root is the one that
// applies. A machine with both (a hybrid layout) is read as v2 when its cgroup2 hierarchy has
// the memory controller, else as v1.
//
// Every path is read under a root directory ("/" on a real machine), so tests can give the
// package a tree of their own. It uses the standard library only.
package cgroupmem

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Limit is the memory limit that applies to the process, in bytes, and the file it was read
// from (under root). No limit (none set, no cgroup file system, not Linux) is 0, "", nil.
func Limit(root string) (limit int64, from string, err error) {
	cgroups, err := readCgroups(filepath.Join(root, "proc", "self", "cgroup"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	mounts, err := readMounts(filepath.Join(root, "proc", "self", "mountinfo"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", err
	}
	if p, ok := cgroups.v2(); ok {
		if m, ok := mounts.find(func(m mount) bool { return m.fstype == "cgroup2" }); ok && m.hasController(root, "memory") {
			return smallest(root, m, p, "memory.max")
		}
	}
	if p, ok := cgroups.v1("memory"); ok {
		if m, ok := mounts.find(func(m mount) bool { return m.fstype == "cgroup" && m.hasOption("memory") }); ok {
			return smallest(root, m, p, "memory.limit_in_bytes")
		}
	}
	return 0, "", nil
}

// noLimitV1 is where cgroup v1's "no limit" starts: the kernel writes 2^63-1 rounded down to a
// page (9223372036854771712), whatever the page size.
const noLimitV1 = 1 << 62

// smallest walks from the cgroup's directory up to the mount point, and returns the smallest
// limit set in file on the way.
func smallest(root string, m mount, cgroupPath, file string) (int64, string, error) {
	rel, ok := relativeTo(m.root, cgroupPath)
	if !ok { // the mount shows another part of the hierarchy: the cgroup is not visible here
		return 0, "", nil
	}
	var limit int64
	var from string
	for dir := rel; ; dir = path.Dir(dir) {
		name := filepath.Join(root, m.point, filepath.FromSlash(dir), file)
		n, set, err := readLimit(name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, "", err
		}
		if set && (limit == 0 || n < limit) {
			limit, from = n, path.Join(m.point, dir, file) // as the machine names it
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	return limit, from, nil
}

// readLimit reads a memory.max or memory.limit_in_bytes: set is false for "max" and for v1's
// no-limit figure.
func readLimit(name string) (n int64, set bool, err error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, false, err
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, false, nil
	}
	u, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %q is not a number of bytes", name, v)
	}
	if u >= noLimitV1 {
		return 0, false, nil
	}
	return int64(u), u > 0, nil
}

// relativeTo is cgroupPath as seen under a mount of the hierarchy at mountRoot, or false when
// it is not under it.
func relativeTo(mountRoot, cgroupPath string) (string, bool) {
	if mountRoot == "/" {
		return path.Clean(cgroupPath), true
	}
	rest, ok := strings.CutPrefix(path.Clean(cgroupPath), path.Clean(mountRoot))
	if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
		return "", false
	}
	if rest == "" {
		rest = "/"
	}
	return rest, true
}

// cgroupLines are the lines of /proc/self/cgroup: hierarchy-ID:controller-list:cgroup-path.
type cgroupLines [][3]string

func readCgroups(name string) (cgroupLines, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out cgroupLines
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), ":", 3)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s: malformed line %q", name, sc.Text())
		}
		out = append(out, [3]string(fields))
	}
	return out, sc.Err()
}

// v2 is the path of the cgroup v2 line ("0::/path").
func (c cgroupLines) v2() (string, bool) {
	for _, l := range c {
		if l[0] == "0" && l[1] == "" {
			return l[2], true
		}
	}
	return "", false
}

// v1 is the path of the v1 hierarchy that has controller.
func (c cgroupLines) v1(controller string) (string, bool) {
	for _, l := range c {
		for _, name := range strings.Split(l[1], ",") {
			if name == controller {
				return l[2], true
			}
		}
	}
	return "", false
}

// mount is one line of /proc/self/mountinfo (proc(5)): the part of the file system it shows,
// where, and of which type.
type mount struct {
	root, point, fstype string
	superOptions        []string
}

func (m mount) hasOption(o string) bool {
	for _, s := range m.superOptions {
		if s == o {
			return true
		}
	}
	return false
}

// hasController reports whether a cgroup2 mount's hierarchy offers controller (cgroup.controllers
// at its root); a machine may mount cgroup2 without giving it the memory controller.
func (m mount) hasController(root, controller string) bool {
	b, err := os.ReadFile(filepath.Join(root, m.point, "cgroup.controllers"))
	if err != nil {
		return false
	}
	for _, c := range strings.Fields(string(b)) {
		if c == controller {
			return true
		}
	}
	return false
}

type mounts []mount

func (ms mounts) find(match func(mount) bool) (mount, bool) {
	for _, m := range ms {
		if match(m) {
			return m, true
		}
	}
	return mount{}, false
}

func readMounts(name string) (mounts, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMounts(f, name)
}

// parseMounts reads mountinfo lines: ID parent major:minor root mount-point options
// [optional fields…] - fstype source super-options.
func parseMounts(r io.Reader, name string) (mounts, error) {
	var out mounts
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		left, right, ok := strings.Cut(sc.Text(), " - ")
		l, rt := strings.Fields(left), strings.Fields(right)
		if !ok || len(l) < 6 || len(rt) < 3 {
			return nil, fmt.Errorf("%s: malformed line %q", name, sc.Text())
		}
		out = append(out, mount{
			root: unescape(l[3]), point: unescape(l[4]), fstype: rt[0],
			superOptions: strings.Split(rt[2], ","),
		})
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
