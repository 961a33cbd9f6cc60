package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"strings"
)

// minTokenLen keeps guessable tokens out: `openssl rand -hex 32` gives 64 characters.
const minTokenLen = 16

// tokenSet holds the SHA-256 of each accepted token. Comparing digests of equal length in
// constant time, against every token, tells an attacker nothing about length or position.
type tokenSet struct {
	digests [][sha256.Size]byte
}

// parseTokens reads UPLOAD_TOKENS. Its errors never quote a token.
func parseTokens(raw string) (*tokenSet, error) {
	list := splitList(raw)
	if len(list) == 0 {
		return nil, nil
	}
	ts := &tokenSet{}
	for i, tok := range list {
		if !strongToken(tok) {
			return nil, fmt.Errorf("UPLOAD_TOKENS: token %d of %d %s", i+1, len(list), tokenRule)
		}
		ts.digests = append(ts.digests, sha256.Sum256([]byte(tok)))
	}
	return ts, nil
}

// tokenRule is what strongToken asks of a token, as a start-up error says it.
var tokenRule = fmt.Sprintf("must be at least %d characters of letters, digits and -._~+/= (try: openssl rand -hex 32)", minTokenLen)

// strongToken is the one rule for the secrets clients send as bearer tokens (UPLOAD_TOKENS,
// METRICS_TOKEN): long enough not to be guessed, and sendable in an Authorization header as it is.
func strongToken(tok string) bool {
	return len(tok) >= minTokenLen && validTokenChars(tok)
}

// validTokenChars accepts RFC 6750's token68 characters, so a token fits an Authorization header as it is.
func validTokenChars(tok string) bool {
	for _, c := range []byte(tok) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// valid reports whether tok is one of the set, looking at every token whatever the answer.
func (ts *tokenSet) valid(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	match := 0
	for i := range ts.digests {
		match |= subtle.ConstantTimeCompare(got[:], ts.digests[i][:])
	}
	return match == 1
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header (RFC 6750 §2.1;
// the scheme is case-insensitive).
func bearerToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || !validTokenChars(tok) {
		return "", false
	}
	return tok, true
}

// isLoopback reports whether the listener only takes connections from this machine.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
