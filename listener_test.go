package main

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/netutil"
)

// Ours and netutil's LimitListener, the same way: the connection past the limit is accepted
// once another closes, and Close ends an Accept that waits. Ours also keeps CloseWrite.
func TestLimitListenerAgreesWithNetutil(t *testing.T) {
	for name, limit := range map[string]func(net.Listener, int) net.Listener{
		"ours":    func(l net.Listener, n int) net.Listener { return newLimitListener(l, n) },
		"netutil": netutil.LimitListener,
	} {
		t.Run(name, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := limit(inner, 2)
			accepted := make(chan net.Conn, 3)
			acceptErr := make(chan error, 1)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						acceptErr <- err
						return
					}
					accepted <- c
				}
			}()
			var clients []net.Conn
			for range 3 {
				c, err := net.Dial("tcp", inner.Addr().String()) // the kernel completes all three
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clients = append(clients, c)
			}
			first, second := acceptedWithin(t, accepted), acceptedWithin(t, accepted)
			select {
			case c := <-accepted:
				t.Fatalf("third connection accepted past the limit of 2: %v", c.RemoteAddr())
			case <-time.After(200 * time.Millisecond): // can only pass wrongly, never fail rightly
			}
			if _, ok := first.(interface{ CloseWrite() error }); !ok && name == "ours" {
				t.Errorf("our connection hides CloseWrite")
			}
			first.Close()
			third := acceptedWithin(t, accepted)
			defer second.Close()
			defer third.Close()
			ln.Close() // while Accept waits for a slot
			select {
			case err := <-acceptErr:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Accept still waits after Close")
			}
		})
	}
}

// acceptedWithin receives from ch, failing after a bound that only keeps a broken test from hanging.
func acceptedWithin(t *testing.T, ch chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}
