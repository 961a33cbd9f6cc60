// Package redistest runs a real redis-server for tests: on a free loopback port, in a temporary
// folder of its own, stopped at the test's cleanup. Without redis-server the test is skipped,
// except under CI=true, where it fails.
package redistest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloudinary-upload-api/internal/testkit"
)

// Server is one redis-server process, which a test may stop and start again on the same port.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	tls   bool
	extra []string
	cmd   *exec.Cmd
	out   chan struct{} // closed when the process's output is read to the end
}

// Start runs redis-server on a free loopback port; args are more of its options, such as
// "--requirepass", "secret".
func Start(t testing.TB, args ...string) *Server { return start(t, false, args) }

// StartTLS runs redis-server with TLS only, on a certificate for 127.0.0.1 that the test makes.
func StartTLS(t testing.TB) *Server { return start(t, true, nil) }

func start(t testing.TB, withTLS bool, extra []string) *Server {
	t.Helper()
	bin := testkit.Tool(t, "redis-server", "redis-server")
	s := &Server{t: t, bin: bin, dir: t.TempDir(), port: freePort(t), tls: withTLS, extra: extra}
	if withTLS {
		writeCert(t, s.dir)
	}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URL is the address to give REDIS_URL.
func (s *Server) URL() string {
	if s.tls {
		return fmt.Sprintf("rediss://127.0.0.1:%d/0", s.port)
	}
	return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port)
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Restart starts the process again (or for the first time), on the same port, and returns once
// it accepts connections. The data of a stopped server is gone: it is not saved.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("redistest: Restart of a running server")
	}
	args := []string{"--bind", "127.0.0.1", "--dir", s.dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--logfile", "", "--loglevel", "notice", "--protected-mode", "no"}
	if s.tls {
		cert, key := filepath.Join(s.dir, "cert.pem"), filepath.Join(s.dir, "key.pem")
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
	}
	cmd := exec.Command(s.bin, append(args, s.extra...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd, s.out = cmd, make(chan struct{})
	ready := make(chan bool, 1)
	var log strings.Builder
	go func() {
		defer close(s.out)
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled {
				log.WriteString(sc.Text() + "\n")
			}
			if !signalled && strings.Contains(sc.Text(), "Ready to accept connections") {
				signalled = true
				ready <- true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		if !signalled {
			ready <- false
		}
	}()
	if !<-ready {
		<-s.out
		_ = cmd.Wait()
		s.cmd = nil
		s.t.Fatalf("redis-server did not start:\n%s", log.String())
	}
}

// Stop ends the process and waits for it; harmless when it is not running.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.out
	_ = s.cmd.Wait() // killed: its error says so
	s.cmd = nil
}

// freePort asks the kernel for a port that is free now.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeCert makes a self-signed certificate for 127.0.0.1, as Heroku's are self-signed.
func writeCert(t testing.TB, dir string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem":  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
