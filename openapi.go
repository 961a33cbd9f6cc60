package main

import (
	_ "embed"
	"net/http"
)

// openAPISpec is openapi.yaml, the API's description, built into the binary.
//
//go:embed openapi.yaml
var openAPISpec []byte

// handleOpenAPI serves GET /openapi.yaml.
func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml") // RFC 9512
		w.Header().Set("Cache-Control", "no-cache")
		if _, err := w.Write(openAPISpec); err != nil {
			loggerFrom(r.Context()).WarnContext(r.Context(), "write openapi.yaml", "err", err)
		}
	})
}
