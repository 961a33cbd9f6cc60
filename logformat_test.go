package main

import (
	"net"
	"testing"
)

// LOG_FORMAT decides when set; auto (the default) is text on a terminal and JSON elsewhere.
func TestLogFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting  string
		terminal bool
		want     string
	}{
		{"auto", true, "text"},
		{"auto", false, "json"},
		{"json", true, "json"},
		{"text", false, "text"},
	} {
		if got := logFormat(tc.setting, tc.terminal); got != tc.want {
			t.Errorf("logFormat(%q, terminal %v) = %q, want %q", tc.setting, tc.terminal, got, tc.want)
		}
	}
	if _, err := loadConfig(mapGetenv(map[string]string{"LOG_FORMAT": "yaml"})); err == nil {
		t.Error("LOG_FORMAT=yaml accepted")
	}
}

func TestLocalURL(t *testing.T) {
	t.Parallel()
	addr := &net.TCPAddr{IP: net.IPv6zero, Port: 4321}
	if got, want := localURL(addr, true), "http://localhost:4321/"; got != want {
		t.Errorf("with the page: %s, want %s", got, want)
	}
	if got, want := localURL(addr, false), "http://localhost:4321/openapi.yaml"; got != want {
		t.Errorf("without the page: %s, want %s", got, want)
	}
}
