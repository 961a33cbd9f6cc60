package main

import (
	"fmt"

	"cloudinary-upload-api/internal/cgroupmem"
)

// memoryPlan is what run() decides about memory at start-up: the uploads' budget
// (UPLOAD_MEMORY), the Go runtime's memory limit, and why, for the log.
type memoryPlan struct {
	uploadMemory int64
	goLimit      int64  // for debug.SetMemoryLimit
	why          string // one sentence
	warning      string // the operator's UPLOAD_MEMORY leaves the process too little room; else empty
}

// planMemory takes UPLOAD_MEMORY as set, or half of the memory limit of the process's cgroup
// (read under cgroupRoot, "/" on a real machine), or internal/config's DefaultUploadMemory without one. Half,
// because a process holds more than its uploads' buffers: the runtime, the collector's garbage
// between cycles, the rate limiter, connections. The Go memory limit is the budget plus
// runtimeHeadroom, and never more than 90% of the container's limit, so that the collector works
// harder before the kernel's OOM killer would end the process.
func planMemory(cfg config, cgroupRoot string) memoryPlan {
	limit, from, err := cgroupmem.Limit(cgroupRoot)
	p := memoryPlan{uploadMemory: cfg.UploadMemory}
	switch {
	case cfg.UploadMemorySet:
		p.why = "UPLOAD_MEMORY is set"
	case err != nil:
		p.why = fmt.Sprintf("the default: the container's memory limit could not be read (%v)", err)
	case limit == 0:
		p.why = "the default: no container memory limit"
	default:
		p.uploadMemory = limit / 2
		p.why = fmt.Sprintf("half of the container's memory limit of %s (%s)", mib(limit), from)
		if need := cfg.uploadReservation(true); cfg.Storage == "cloudinary" && p.uploadMemory < need {
			p.uploadMemory = need
			p.why += fmt.Sprintf(", raised to %s: one chunked upload (CHUNK_SIZE and its buffers)", mib(need))
		}
	}
	p.goLimit = p.uploadMemory + runtimeHeadroom
	if limit > 0 && p.goLimit > limit-limit/10 {
		p.goLimit = limit - limit/10
		if cfg.UploadMemorySet || p.uploadMemory > limit/2 {
			p.warning = fmt.Sprintf("UPLOAD_MEMORY=%s leaves little of the container's %s for the rest of the process: uploads may be ended by the OOM killer; unset it to take half", mib(p.uploadMemory), mib(limit))
		}
	}
	return p
}

// mib writes a size in MiB, as the log and the variables' examples do.
func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
}
