package main

import (
	"net"
	"sync"
)

// limitListener accepts at most max connections open at once: past it, Accept waits for one of
// them to close, and the others wait in the kernel's listen queue. It is the idea of
// golang.org/x/net/netutil's LimitListener (listener_test.go checks the two alike), which
// cannot serve here: its connections hide the *net.TCPConn's other methods, and net/http needs
// CloseWrite to half-close before it closes a connection it answers while the client still
// sends (a 431, a refusal past the drain's bound), or the client gets a reset, not the answer.
type limitListener struct {
	net.Listener
	slots     chan struct{} // one per open connection
	closed    chan struct{} // closed by Close: a waiting Accept gives up
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, max int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max), closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	var once sync.Once
	free := func() { once.Do(func() { <-l.slots }) }
	if tc, ok := c.(*net.TCPConn); ok {
		return &limitedTCPConn{TCPConn: tc, free: free}, nil
	}
	return &limitedConn{Conn: c, free: free}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}

// limitedTCPConn is a TCP connection that gives its slot back when closed; it keeps every
// method of *net.TCPConn (CloseWrite, ReadFrom for sendfile, …).
type limitedTCPConn struct {
	*net.TCPConn
	free func()
}

func (c *limitedTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.free()
	return err
}

// limitedConn is any other connection that gives its slot back when closed.
type limitedConn struct {
	net.Conn
	free func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.free()
	return err
}
