package grpcload

import (
	"net"
	"sync"
)

// handoff shares one listener between successive servers, as a hot restart
// does (the next process inherits the listening socket while the old one
// drains): each server accepts through its own view, and closing a view,
// which grpc.Server.GracefulStop does, stops that server's Accept without
// closing the socket the next server accepts from.
type handoff struct {
	ln    net.Listener
	conns chan net.Conn

	closeOnce sync.Once
	closed    chan struct{} // Close was called
	dead      chan struct{} // the accept loop has returned; err says why
	err       error
}

func newHandoff(ln net.Listener) *handoff {
	h := &handoff{
		ln:     ln,
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
		dead:   make(chan struct{}),
	}
	go h.acceptLoop()
	return h
}

// acceptLoop accepts from the shared listener and hands each connection to
// whichever view accepts next.
func (h *handoff) acceptLoop() {
	defer close(h.dead)
	for {
		c, err := h.ln.Accept()
		if err != nil {
			h.err = err
			return
		}
		select {
		case h.conns <- c:
		case <-h.closed:
			c.Close()
			h.err = net.ErrClosed
			return
		}
	}
}

// view returns a listener for one server.
func (h *handoff) view() *handoffView {
	return &handoffView{h: h, closed: make(chan struct{})}
}

// Close closes the shared listener and waits for the accept loop to end.
func (h *handoff) Close() error {
	var err error
	h.closeOnce.Do(func() {
		close(h.closed)
		err = h.ln.Close()
	})
	<-h.dead
	return err
}

// handoffView is one server's view of a handoff.
type handoffView struct {
	h         *handoff
	closeOnce sync.Once
	closed    chan struct{}
}

func (v *handoffView) Accept() (net.Conn, error) {
	select {
	case <-v.closed:
		return nil, v.closedErr()
	default:
	}
	select {
	case c := <-v.h.conns:
		return c, nil
	case <-v.closed:
		return nil, v.closedErr()
	case <-v.h.dead:
		return nil, v.h.err
	}
}

func (v *handoffView) closedErr() error {
	return &net.OpError{Op: "accept", Net: v.Addr().Network(), Addr: v.Addr(), Err: net.ErrClosed}
}

// Close stops this view's Accept; the shared listener stays open.
func (v *handoffView) Close() error {
	v.closeOnce.Do(func() { close(v.closed) })
	return nil
}

func (v *handoffView) Addr() net.Addr { return v.h.ln.Addr() }
