package linger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/linger-go/linger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Close wakes the owner's Read and Write calls blocked in the socket,
// whichever are, on every path, while the close still lingers (the peer
// neither reads nor closes, and the bound is an hour away): with no Read
// in flight a TCP close wakes no one itself, and the shutdown that sends
// the FIN must wake the blocked Write.
func TestCloseUnblocksReadAndWrite(t *testing.T) {
	blocked := []struct {
		name        string
		read, write bool
	}{
		{"read and write", true, true},
		{"write", false, true},
		{"read", true, false},
	}
	for _, p := range closePaths {
		for _, b := range blocked {
			t.Run(p.name+"/"+b.name, func(t *testing.T) {
				s := p.listen(t, linger.Config{LingerTimeout: time.Hour})
				client, srv := pair(t, s)
				closeUnblocks(t, srv, b.read, b.write)
				client.Close()
				s.Next(t)
			})
		}
	}
	t.Run("unix socket/write", func(t *testing.T) {
		raw, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		require.NoError(t, err)
		ln := linger.Wrap(raw, linger.Config{LingerTimeout: time.Hour})
		t.Cleanup(func() { ln.Shutdown(context.Background()) })
		client, err := net.Dial("unix", raw.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { client.Close() }) // before the Shutdown, which waits for the close
		srv, err := ln.Accept()
		require.NoError(t, err)
		closeUnblocks(t, srv, false, true)
	})
}

// closeUnblocks blocks a Read, a Write or both in srv, closes it, and
// checks that each returns net.ErrClosed while the close lingers.
func closeUnblocks(t *testing.T, srv net.Conn, read, write bool) {
	t.Helper()
	readErr := make(chan error, 1)
	if read {
		go func() {
			_, err := srv.Read(make([]byte, 1))
			readErr <- err
		}()
		waitParked(t, "linger.(*Conn).Read")
	}
	writeErr := make(chan error, 1)
	if write {
		go func() {
			// The client never reads, so this blocks once the buffers fill.
			chunk := make([]byte, 1<<20)
			for range 1024 {
				if _, err := srv.Write(chunk); err != nil {
					writeErr <- err
					return
				}
			}
			writeErr <- nil
		}()
		waitParked(t, "linger.(*Conn).Write")
	}
	require.NoError(t, srv.Close())
	for _, c := range []struct {
		on   bool
		name string
		err  chan error
	}{{read, "Read", readErr}, {write, "Write", writeErr}} {
		if !c.on {
			continue
		}
		select {
		case err := <-c.err:
			assert.ErrorIs(t, err, net.ErrClosed, c.name)
		case <-time.After(10 * time.Second): // a bound on failure, not a wait
			t.Fatalf("the %s is still blocked 10 s after Close, while the close lingers", c.name)
		}
	}
}

// A read deadline the owner left (net/http sets them and a past one to
// end its background read) does not cut the lingering close short: it
// waits for the peer's FIN, on every path.
func TestOwnersDeadlineDoesNotEndTheLinger(t *testing.T) {
	for _, p := range closePaths {
		t.Run(p.name, func(t *testing.T) {
			s := p.listen(t, linger.Config{LingerTimeout: time.Hour})
			client, srv := pair(t, s)
			require.NoError(t, srv.SetReadDeadline(time.Now().Add(-time.Second)))
			require.NoError(t, srv.Close())
			_, err := client.Read(make([]byte, 1))
			require.ErrorIs(t, err, io.EOF, "our FIN")
			require.NoError(t, client.Close())
			assert.Equal(t, linger.Clean, s.Next(t).Outcome, "the close waited for the peer's FIN")
		})
	}
}

func TestSecondCloseReturnsErrClosed(t *testing.T) {
	s := listen(t, linger.Config{})
	_, srv := pair(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- srv.Close() }()
	}
	wg.Wait()
	close(errs)
	nils := 0
	for err := range errs {
		if err == nil {
			nils++
			continue
		}
		var op *net.OpError
		assert.ErrorAs(t, err, &op)
		assert.Equal(t, "close", op.Op)
		assert.ErrorIs(t, err, net.ErrClosed)
	}
	assert.Equal(t, 1, nils, "exactly one Close succeeds")
	_, err := srv.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = srv.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, srv.SetDeadline(time.Now()), net.ErrClosed)
}

// Accept returns a *linger.Conn (the compile-time assertions in conn.go
// keep its optional interfaces), whose methods reach the *net.TCPConn.
func TestOptionalInterfacesSurviveAccept(t *testing.T) {
	s := listen(t, linger.Config{})
	_, nc := pair(t, s)
	c, ok := nc.(*linger.Conn)
	require.True(t, ok, "Accept returns a *linger.Conn, not %T", nc)
	_, isTCP := c.NetConn().(*net.TCPConn)
	assert.True(t, isTCP, "NetConn unwraps to the *net.TCPConn")
	assert.NoError(t, c.SetNoDelay(true))
	assert.NoError(t, c.SetKeepAlive(true))
	assert.NoError(t, c.SetKeepAlivePeriod(time.Minute))
	assert.NoError(t, c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Minute}))
	assert.NoError(t, c.SetReadBuffer(64<<10))
	assert.NoError(t, c.SetWriteBuffer(64<<10))
	assert.NoError(t, c.SetLinger(5))
	_, err := c.SyscallConn()
	assert.NoError(t, err)
}

func TestReadFromAndWriteToCarryData(t *testing.T) {
	s := listen(t, linger.Config{})
	client, srv := pair(t, s)
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	f, err := os.Create(filepath.Join(t.TempDir(), "payload"))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	_, err = f.Write(data)
	require.NoError(t, err)
	_, err = f.Seek(0, io.SeekStart)
	require.NoError(t, err)

	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(client); got <- b }()
	n, err := srv.(io.ReaderFrom).ReadFrom(f) // the sendfile path
	require.NoError(t, err)
	assert.EqualValues(t, len(data), n)
	require.NoError(t, srv.(*linger.Conn).CloseWrite())
	assert.Equal(t, data, <-got)

	go func() { client.Write(data); client.CloseWrite() }()
	var out bytes.Buffer
	n, err = srv.(io.WriterTo).WriteTo(&out)
	require.NoError(t, err)
	assert.EqualValues(t, len(data), n)
	assert.Equal(t, data, out.Bytes())
	require.NoError(t, srv.Close())
	assert.Equal(t, linger.Clean, s.Next(t).Outcome, "WriteTo saw the peer's FIN")
}

// pipeListener hands out net.Pipe conns: no half-close, no socket.
type pipeListener struct {
	conns chan net.Conn
}

func (l *pipeListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "pipe"} }

func TestConnWithoutHalfCloseClosesPlainly(t *testing.T) {
	pl := &pipeListener{conns: make(chan net.Conn, 1)}
	closes := make(chan linger.CloseInfo, 1)
	var logged bytes.Buffer
	ln := linger.Wrap(pl, linger.Config{OnClose: func(ci linger.CloseInfo) { closes <- ci }, ErrorLog: log.New(&logged, "", 0)})
	client, server := net.Pipe()
	pl.conns <- server
	nc, err := ln.Accept()
	require.NoError(t, err)
	c := nc.(*linger.Conn)

	for name, err := range map[string]error{
		"CloseWrite": c.CloseWrite(),
		"CloseRead":  c.CloseRead(),
		"SetLinger":  c.SetLinger(0),
		"SetNoDelay": c.SetNoDelay(true),
	} {
		assert.ErrorIs(t, err, errors.ErrUnsupported, name)
	}
	_, err = c.SyscallConn()
	assert.ErrorIs(t, err, errors.ErrUnsupported)

	go func() { client.Write([]byte("hello")) }()
	var out bytes.Buffer
	go func() { io.Copy(c, bytes.NewReader([]byte("world"))) }() // ReadFrom's fallback
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))
	_, err = io.CopyN(&out, client, 5)
	require.NoError(t, err)
	assert.Equal(t, "world", out.String())

	require.NoError(t, c.Close())
	ci := <-closes
	assert.Equal(t, linger.Plain, ci.Outcome)
	assert.Equal(t, -1, ci.Unread)
	assert.Contains(t, logged.String(), "net.pipe, which hides CloseWrite", "the user learns why once")
	_, err = client.Read(buf)
	assert.ErrorIs(t, err, io.EOF)
	require.NoError(t, ln.Shutdown(context.Background()))
}

func TestUnixSocketLingers(t *testing.T) {
	dir, err := os.MkdirTemp("", "linger")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	raw, err := net.Listen("unix", filepath.Join(dir, "s"))
	require.NoError(t, err)
	closes := make(chan linger.CloseInfo, 1)
	ln := linger.Wrap(raw, linger.Config{OnClose: func(ci linger.CloseInfo) { closes <- ci }})
	t.Cleanup(func() { ln.Shutdown(context.Background()) })

	client, err := net.Dial("unix", raw.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	srv, err := ln.Accept()
	require.NoError(t, err)
	_, err = client.Write([]byte("unread"))
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	_, err = readEnd(client)
	assert.NoError(t, err, "client reads EOF")
	require.NoError(t, client.Close())
	ci := <-closes
	assert.Contains(t, []linger.Outcome{linger.Pending, linger.Crossed}, ci.Outcome)
	assert.EqualValues(t, 6, ci.Discarded)
}

// A Read parked when Close wakes it must not return bytes the peer sent
// after the close: they belong to the lingering close (outcome crossed).
// The poller can hand such a Read the bytes if they arrive before it runs,
// so the race is run many times.
func TestReadParkedAtCloseNeverGetsLaterBytes(t *testing.T) {
	s := listen(t, linger.Config{})
	const late = "GET /late HTTP/1.1\r\n\r\n"
	crossed := 0
	for range 300 {
		client, srv := pair(t, s)
		got := make(chan error, 1)
		go func() {
			n, err := srv.Read(make([]byte, 64))
			if n > 0 {
				err = fmt.Errorf("Read returned %d bytes after Close", n)
			}
			got <- err
		}()
		waitParked(t, "linger.(*Conn).Read")
		require.NoError(t, srv.Close())
		_, err := client.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF)
		_, err = io.WriteString(client, late)
		require.NoError(t, err)
		client.Close()
		assert.ErrorIs(t, <-got, net.ErrClosed, "the owner's Read never returns bytes after Close")
		// Crossed, with the bytes counted wherever they were taken; in a
		// rare preemption the racing Read's bytes go uncounted (drain.go).
		if ci := s.Next(t); ci.Outcome == linger.Crossed {
			assert.EqualValues(t, len(late), ci.Discarded)
			crossed++
		} else {
			assert.Equal(t, linger.Clean, ci.Outcome)
		}
	}
	assert.Greater(t, crossed, 250, "crossed closes counted")
}
