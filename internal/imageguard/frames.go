package imageguard

import (
	"errors"
	"fmt"
)

// Frames: an animation (GIF, APNG, animated WebP), a multi-page TIFF and an ICO hold several
// images. Each one's size (and position) is checked against MaxPixels and MaxDimension like the
// canvas, and all together against MaxFrames and MaxAnimationPixels: a decoder that plays an
// animation decodes every frame, so 5,000 frames of 7,000 × 7,000 are a bomb even when each
// frame is within the limits.

// The defaults of Options.MaxFrames and Options.MaxAnimationPixels.
const (
	// DefaultMaxFrames admits the animations people make (a GIF of 30 s at 25 frames a second
	// has 750) and stops the ones that only serve to make a decoder work.
	DefaultMaxFrames = 1000
	// DefaultMaxAnimationPixels is the pixels of all frames together: forty frames at the
	// default MaxPixels, or about 960 frames of 1920 × 1080.
	DefaultMaxAnimationPixels = 2_000_000_000
)

// ErrTooManyFrames is an image past MaxFrames or MaxAnimationPixels; test with errors.Is.
var ErrTooManyFrames = errors.New("image has too many frames")

// FramesError is an image whose frames pass MaxFrames, or whose frames' pixels added up pass
// MaxAnimationPixels. It Is ErrTooManyFrames.
type FramesError struct {
	Frames             int64 // frames counted (or declared) when the limit was passed
	Pixels             int64 // the pixels of those frames, added up
	MaxFrames          int64
	MaxAnimationPixels int64
}

// TooMany says whether it was the number of frames that passed its limit (else their pixels).
func (e *FramesError) TooMany() bool { return e.Frames > e.MaxFrames }

func (e *FramesError) Error() string {
	if e.TooMany() {
		return fmt.Sprintf("image has more than %d frames", e.MaxFrames)
	}
	return fmt.Sprintf("image's frames add up to more than %d pixels", e.MaxAnimationPixels)
}

// Is reports whether target is ErrTooManyFrames.
func (e *FramesError) Is(target error) bool { return target == ErrTooManyFrames }

// frameCount adds up the frames of one file.
type frameCount struct {
	n, pixels int64
}

// add counts one frame of the given pixels; the caller has checked its size.
func (c *frameCount) add(o Options, pixels int64) error {
	c.n++
	c.pixels += pixels
	if c.n > o.MaxFrames || c.pixels > o.MaxAnimationPixels {
		return &FramesError{Frames: c.n, Pixels: c.pixels, MaxFrames: o.MaxFrames, MaxAnimationPixels: o.MaxAnimationPixels}
	}
	return nil
}

// frame checks one frame of w × h at (x, y) against the limits, its extent (x+w, y+h) too,
// and counts it.
func (c *frameCount) frame(o Options, format string, x, y, w, h int64) error {
	if err := o.checkSize(format, w, h); err != nil {
		return err
	}
	if err := o.checkSize(format, x+w, y+h); err != nil {
		return err
	}
	return c.add(o, w*h)
}

// declared refuses a file whose header announces more frames than MaxFrames (APNG's acTL),
// before any of them is read.
func (o Options) declared(n int64) error {
	if n > o.MaxFrames {
		return &FramesError{Frames: n, MaxFrames: o.MaxFrames, MaxAnimationPixels: o.MaxAnimationPixels}
	}
	return nil
}
