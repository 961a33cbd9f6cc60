package cloudinary

import "testing"

// The planned lengths stream every chunk but a last one no longer than the slack when the bound
// is near the file's size (with chunks of twice Cloudinary's least or more: the lengths need room), keep every streamed chunk within [MinChunkBytes, size], and stream
// nothing without a bound.
func TestStreamLength(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, bound int64
		size        int
	}{
		{150_000_000, 150_000_300, 20_000_000}, // the benchmark's S4: a form's file and its request's length
		{250_000_000, 250_000_000, 20_000_000}, // an exact size
		{104_857_601, 104_900_000, MinChunkBytes},
		{130_000_000, 130_000_200, 100 << 20},
		{25_000_000, 25_000_200, 20_000_000}, // a bound that is low: only for uploads of unknown size in practice
	} {
		var start int64
		var streamed int
		for {
			l := streamLength(start, tc.size, tc.bound)
			if l == 0 {
				break
			}
			if l < MinChunkBytes || l > tc.size {
				t.Fatalf("%+v: chunk at %d of %d bytes", tc, start, l)
			}
			start += int64(l)
			streamed++
		}
		if last := tc.file - start; last > streamSlack && tc.size >= 2*MinChunkBytes && tc.file > int64(tc.size)+MinChunkBytes {
			t.Errorf("%+v: %d chunks streamed, then %d bytes read whole", tc, streamed, last)
		}
	}
	if l := streamLength(0, 20_000_000, -1); l != 0 {
		t.Errorf("no bound: %d", l)
	}
}
