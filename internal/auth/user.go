// Package auth verifies sign-in tokens (JSON Web Tokens from an identity provider's JWKS, or
// HS256 tokens minted with a shared secret) and says who the user is. It knows nothing of HTTP
// statuses: it returns its own error values, and the root's errors.go decides what a client sees.
package auth

import (
	"context"
	"strings"
)

// User is who a valid sign-in token says is uploading.
type User struct {
	Subject string // the token's sub claim, never empty
}

type userKey struct{}

// NewContext returns ctx carrying u.
func NewContext(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// FromContext returns the signed-in user of ctx, if any.
func FromContext(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

// FolderName writes a subject as one folder name: letters, digits and '-' stay as they are,
// every other byte becomes '_' and two upper-case hex digits ("auth0|abc" → "auth0_7Cabc").
// Since '_' is always escaped, two different subjects never give the same name, and the result
// is within Cloudinary's rules for folder names (no '/', '.', space, '?', '&', '#', '%', '<', '>').
func FolderName(sub string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(sub))
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

// SubjectPlaceholder is what UPLOAD_FOLDER holds where each user's own folder name goes.
const SubjectPlaceholder = "{sub}"

// Folder is u's own folder: template (UPLOAD_FOLDER) with every {sub} replaced by
// FolderName(u.Subject), e.g. "users/{sub}" → "users/auth0_7Cabc".
func Folder(template string, u User) string {
	return strings.ReplaceAll(template, SubjectPlaceholder, FolderName(u.Subject))
}
