package imageguard

import (
	"bytes"
	"encoding/binary"
)

// ICO and CUR (Microsoft's icon resources): a 6-byte header (0, a type of 1 for an icon or 2
// for a cursor, the number of images), then a 16-byte directory entry per image (its width
// and height as one byte each, 0 meaning 256, ..., its length and its offset in the file).
// Each image is a PNG file or a DIB (a BMP without its file header, twice as high: the colour
// rows, then the mask's). The directory says at most 256 a side, but a decoder sizes its
// buffers by the image itself, which may claim anything: each image's own header is read (the
// PNG's IHDR, the DIB's size), checked, and counted as a frame.

func guardICO(s *source, opts Options) (Result, error) {
	const f = "ICO"
	b, err := s.take(6)
	if err != nil {
		return Result{}, truncation(f, err, "the header")
	}
	n := int64(binary.LittleEndian.Uint16(b[4:]))
	if n == 0 {
		return Result{}, malformed(f, "a directory of no images")
	}
	if err := opts.declared(n); err != nil {
		return Result{}, err
	}
	dir, err := s.take(16 * int(n))
	if err != nil {
		return Result{}, truncation(f, err, "the directory")
	}
	o := &offsetWalk{format: f, src: s, pos: 6 + 16*n}
	var firstW, firstH int64
	image := func(w *chunkWalker) error {
		h, err := o.take(w, 8, "an image")
		if err != nil {
			return err
		}
		var iw, ih int64
		if string(h) == pngSignature {
			ihdr, err := o.take(w, 16, "an image's IHDR")
			if err != nil {
				return err
			}
			if string(ihdr[4:8]) != "IHDR" {
				return malformed(f, "a PNG image without its IHDR")
			}
			iw, ih = int64(binary.BigEndian.Uint32(ihdr[8:])), int64(binary.BigEndian.Uint32(ihdr[12:]))
		} else {
			if !bmpHeaderSizes[binary.LittleEndian.Uint32(h)] {
				return malformed(f, "an image that is neither a PNG nor a DIB")
			}
			more, err := o.take(w, 4, "an image's header")
			if err != nil {
				return err
			}
			iw, ih = dibSize(append(bytes.Clone(h), more...))
			ih /= 2 // the colour rows and the mask's
		}
		if err := opts.checkSize(f, iw, ih); err != nil {
			return err
		}
		if o.frames.n == 0 {
			firstW, firstH = iw, ih
		}
		return o.frames.add(opts, iw*ih)
	}
	seen := map[int64]bool{}
	for i := range n {
		e := dir[16*i : 16*i+16]
		off := int64(binary.LittleEndian.Uint32(e[12:]))
		if seen[off] { // two entries of one image: it is read once
			continue
		}
		seen[off] = true
		if err := o.add(visit{off: off, what: "an image", read: image}); err != nil {
			return Result{}, err
		}
	}
	res, err := o.start("ico")
	res.Width, res.Height = firstW, firstH
	return res, err
}
