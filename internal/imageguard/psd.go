package imageguard

import "encoding/binary"

// PSD and PSB (Adobe's Photoshop File Formats Specification): "8BPS", a version (1 for PSD, 2
// for PSB, the large document format), six reserved bytes, the number of channels, then the
// canvas's height and width as 32-bit big-endian values. Then sections, each after its
// length: the colour mode data and the image resources (4-byte lengths), and the layer and
// mask information (8 bytes in a PSB), which opens with the layer info (its length, then a
// count of layers, negative when the first alpha channel holds the merged transparency) and
// one record per layer: its rectangle (top, left, bottom, right, signed 32-bit), its number
// of channels and a 6-byte (PSB: 10-byte) entry each, 12 bytes of blending, then the length of
// its extra data (mask, name, further information) and that data. A reader that keeps layers
// (ImageMagick makes an image of each) sizes each by its rectangle: every layer is checked
// like the canvas, and counted as a frame. The sections are walked by offset as the file
// streams (seek.go); nothing is removed.

func guardPSD(s *source, opts Options) (Result, error) {
	const f = "PSD"
	be := binary.BigEndian
	b, err := s.take(26)
	if err != nil {
		return Result{}, truncation(f, err, "the header")
	}
	version := be.Uint16(b[4:])
	if version != 1 && version != 2 {
		return Result{}, malformed(f, "version %d (want 1 or 2)", version)
	}
	h, w := int64(be.Uint32(b[14:])), int64(be.Uint32(b[18:]))
	if err := opts.checkSize(f, w, h); err != nil {
		return Result{}, err
	}
	long := 4 // the length of a length in the layer sections: 8 in a PSB
	if version == 2 {
		long = 8
	}
	o := &offsetWalk{format: f, src: s, pos: 26}
	length := func(p []byte) int64 {
		if len(p) == 8 {
			return int64(be.Uint64(p) & (1<<62 - 1)) // past any file: the walk ends at its end
		}
		return int64(be.Uint32(p))
	}
	// at plans the next read right after what was just read, or n bytes further on.
	at := func(n int64, what string, read func(w *chunkWalker) error) error {
		return o.add(visit{off: o.pos + n, what: what, read: read})
	}
	var layers, left int64
	var layer func(w *chunkWalker) error
	layer = func(w *chunkWalker) error {
		r, err := o.take(w, 18, "a layer record")
		if err != nil {
			return err
		}
		top, lft := int64(int32(be.Uint32(r))), int64(int32(be.Uint32(r[4:])))
		bottom, right := int64(int32(be.Uint32(r[8:]))), int64(int32(be.Uint32(r[12:])))
		lw, lh := right-lft, bottom-top
		if lw < 0 || lh < 0 {
			return malformed(f, "a layer of %d × %d", lw, lh)
		}
		if lw > 0 && lh > 0 { // an empty layer (a group's bounds) holds no pixels
			if err := opts.checkSize(f, lw, lh); err != nil {
				return err
			}
		}
		if err := o.frames.add(opts, lw*lh); err != nil {
			return err
		}
		channels := int(be.Uint16(r[16:]))
		rest, err := o.take(w, channels*(2+long)+12+4, "a layer record")
		if err != nil {
			return err
		}
		if string(rest[channels*(2+long):][:4]) != "8BIM" {
			return malformed(f, "a layer record without its blend mode signature")
		}
		extra := int64(be.Uint32(rest[len(rest)-4:]))
		if left--; left == 0 {
			return nil // the channels' image data and the rest pass as they are
		}
		return at(extra, "a layer record", layer)
	}
	layerInfo := func(w *chunkWalker) error {
		p, err := o.take(w, long, "the layer and mask information")
		if err != nil {
			return err
		}
		if length(p) < int64(long)+2 {
			return nil // no layers
		}
		if p, err = o.take(w, long, "the layer info"); err != nil {
			return err
		}
		if length(p) < 2 {
			return nil
		}
		c, err := o.take(w, 2, "the layer count")
		if err != nil {
			return err
		}
		layers = int64(int16(be.Uint16(c)))
		layers = max(layers, -layers)
		if err := opts.declared(layers); err != nil {
			return err
		}
		if left = layers; left == 0 {
			return nil
		}
		return at(0, "a layer record", layer)
	}
	resources := func(w *chunkWalker) error {
		p, err := o.take(w, 4, "the image resources")
		if err != nil {
			return err
		}
		return at(length(p), "the layer and mask information", layerInfo)
	}
	colorMode := func(w *chunkWalker) error {
		p, err := o.take(w, 4, "the colour mode data")
		if err != nil {
			return err
		}
		return at(length(p), "the image resources", resources)
	}
	if err := at(0, "the colour mode data", colorMode); err != nil {
		return Result{}, err
	}
	res, err := o.start("psd")
	res.Width, res.Height = w, h
	return res, err
}
