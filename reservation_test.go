package main

import (
	"strconv"
	"testing"
)

// An upload reserves what its size lets it hold: a 100 KB one neither a 1 MiB read buffer nor
// a 2 MiB window for the guard; one of unknown or large size as much as any.
func TestReservationSizedToTheUpload(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	most := cfg.uploadReservation(false)
	if most != int64(requestBufferBytes+copyBufferBytes+perUploadOverhead+2<<20) {
		t.Errorf("the most an upload reserves: %d", most)
	}
	for _, size := range []int64{-1, 5_000_000, 1 << 30} {
		if got := cfg.uploadReservationFor(size); got != most {
			t.Errorf("body of %d bytes reserves %d, want %d", size, got, most)
		}
	}
	small := cfg.uploadReservationFor(100_300)
	if small > 600<<10 {
		t.Errorf("a 100 KB upload reserves %d bytes, want at most 600 KiB", small)
	}
	prev := int64(0)
	for size := int64(0); size < 4<<20; size += 50_000 {
		got := cfg.uploadReservationFor(size)
		if got < prev || size <= requestBufferBytes && got < size { // a small body may stand whole in its read buffer
			t.Fatalf("body of %d bytes reserves %d (the smaller one before: %d)", size, got, prev)
		}
		prev = got
	}
}

// On a budget that holds two uploads of unknown size, a dozen small ones are in at once.
func TestSmallUploadsFitMore(t *testing.T) {
	fake := newFakeCloudinary(t)
	env := baseEnv(t, fake)
	env["CHUNK_SIZE"] = strconv.Itoa(minChunkBytes)
	cfg := testConfig()
	cfg.ChunkSize = minChunkBytes
	budget := cfg.uploadReservation(true) // the least the server starts with
	if budget >= 3*cfg.uploadReservation(false) {
		t.Fatalf("budget %d holds 3 uploads of unknown size: the test shows nothing", budget)
	}
	env["UPLOAD_MEMORY"] = strconv.FormatInt(budget, 10)
	env["MAX_UPLOADS_PER_CLIENT"] = "off"
	env["MAX_MEMORY_PER_CLIENT"] = "100%"
	env["RATE_LIMIT"] = "off"
	env["ADMISSION_WAIT"] = "100ms"
	srv := startServer(t, env)
	holdAllThenFinish(t, clientFrom(t, "127.0.0.2"), srv.url, fake, 12)
}
