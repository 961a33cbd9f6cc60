package upload

import (
	"slices"
	"strings"

	"github.com/gabriel-vasile/mimetype"

	"cloudinary-upload-api/internal/imageguard"
)

// SniffLen is how many of the file's first bytes the type is sniffed from (what mimetype reads
// by default).
const SniffLen = 3072

// Sniff says what the file's first bytes are, never what the client says they are.
func Sniff(head []byte) *mimetype.MIME {
	return mimetype.Detect(head)
}

// baseType is a MIME type without its parameters.
func baseType(m *mimetype.MIME) string {
	base, _, _ := strings.Cut(m.String(), ";")
	return base
}

// TypeAllowed matches a sniffed type against the allowed types. "image/*" stands for the image
// types whose size the image guard reads (imageguard.Checks): another image type (SVG, which
// can carry script, JPEG XL, ICNS...) is admitted only when named, or by "*". measured is
// true when only "image/*" admits the file: the guard must then read its size.
func TypeAllowed(m *mimetype.MIME, allowed []string) (ok, measured bool) {
	base := baseType(m)
	for _, a := range allowed {
		switch {
		case a == "*", m.Is(a):
			return true, false
		case a == "image/*" && imageguard.Checks(base):
			ok = true
		case a != "image/*" && strings.HasSuffix(a, "/*") && strings.HasPrefix(base, strings.TrimSuffix(a, "*")):
			return true, false
		}
	}
	return ok, ok
}

// UncheckedImageTypes are the entries of allowed that admit image files whose size the image
// guard cannot read: an image type named that it does not check, another image/ family
// pattern than image/*, or "*".
func UncheckedImageTypes(allowed []string) []string {
	var out []string
	for _, a := range allowed {
		if a == "*" || strings.HasPrefix(a, "image/") && a != "image/*" && !imageguard.Checks(canonicalType(a)) {
			out = append(out, a)
		}
	}
	return out
}

// canonicalType is mimetype's own name for a MIME type or one of its aliases.
func canonicalType(t string) string {
	if m := mimetype.Lookup(t); m != nil {
		return baseType(m)
	}
	return t
}

// checkType applies the type policy to the sniffed head: nil, or a *TypeError. measured says
// the guard must read the file's size.
func checkType(head []byte, allowed []string) (base string, measured bool, err error) {
	got := Sniff(head)
	base = baseType(got)
	ok, measured := TypeAllowed(got, allowed)
	if ok {
		return base, measured, nil
	}
	reason := NotAllowed
	// SVG is refused for what it can carry, not for its size: the plain reason.
	if strings.HasPrefix(base, "image/") && base != "image/svg+xml" && !imageguard.Checks(base) && slices.Contains(allowed, "image/*") {
		reason = Unchecked
	}
	return base, false, &TypeError{Type: base, Allowed: allowed, Reason: reason}
}
