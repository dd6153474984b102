//go:build linux

// Command kernel prices, in CPU time, what each way of closing a TCP
// connection asks of the kernel: the server's CPU time under churn
// (bench/cost/run -cpu) moves too much on a shared machine to resolve a
// microsecond, and callgrind sees no kernel.
//
// One thread plays client and server on loopback with blocking system
// calls. On loopback a segment is processed inside the system call that
// sends it, so each step's whole cost lands in the thread's CPU clock,
// and reading the clock between the server's steps and the client's
// tells them apart. A cycle connects, sends an HTTP/1.0 request, answers
// it, and closes both ends as a form does; from accept to close the
// server's socket is in an epoll set, as Go's poller holds it. Forms run
// in rounds, in rotating order, and a form's figure is the median over
// the rounds of its difference to raw's in the same round.
//
//	kernel [-n cycles per form and round] [-rounds N]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"

	"golang.org/x/sys/unix"
)

var (
	request  = []byte("GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n")
	response = []byte("HTTP/1.0 200 OK\r\nDate: Thu, 03 Dec 2026 22:00:00 GMT\r\nContent-Length: 6\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\n")
	buf      [4096]byte
)

// form is one way of closing the server's socket s: at is what the
// owner's Close does once the response is written, and returns the
// descriptor that lives on; after is what is done with it once the
// client has closed (its FIN is queued).
type form struct {
	name, what string
	watched    bool // in the set
	at         func(t *tester, s int) int
	after      func(t *tester, fd int)
}

var forms = []form{
	{"raw", "Go's poller forgets s (EPOLL_CTL_DEL), close", false,
		func(t *tester, s int) int { t.forget(s); check(unix.Close(s)); return -1 },
		nil},
	{"floor", "shutdown(SHUT_WR); after the FIN: recv, EPOLL_CTL_DEL, close: what any lingering close must do", false,
		func(t *tester, s int) int { check(unix.Shutdown(s, unix.SHUT_WR)); return s },
		func(t *tester, s int) { t.eof(s); t.forget(s); check(unix.Close(s)) }},
	{"+ioctl", "the floor, and ioctl(SIOCINQ) at close, for CloseInfo.Unread", false,
		func(t *tester, s int) int { check(unix.Shutdown(s, unix.SHUT_WR)); inq(s); return s },
		func(t *tester, s int) { t.eof(s); t.forget(s); check(unix.Close(s)) }},
	{"goroutine", "+ioctl, and a recv that finds nothing at close: linger's goroutine form (Go's Read tries before it parks)", false,
		func(t *tester, s int) int {
			check(unix.Shutdown(s, unix.SHUT_WR))
			inq(s)
			if _, _, err := unix.Recvfrom(s, buf[:], unix.MSG_DONTWAIT); err != unix.EAGAIN {
				panic(fmt.Sprint("recv at close: ", err))
			}
			return s
		},
		func(t *tester, s int) { t.eof(s); t.forget(s); check(unix.Close(s)) }},
	{"set, Go's descriptor", "+ioctl, and s watched in a set (EPOLL_CTL_ADD, one-shot): linger's set when closes queue", true,
		func(t *tester, s int) int {
			check(unix.Shutdown(s, unix.SHUT_WR))
			inq(s)
			t.watch(s)
			return s
		},
		func(t *tester, s int) { t.eof(s); t.forget(s); check(unix.Close(s)) }},
	{"set, dup", "+ioctl, a dup (F_DUPFD_CLOEXEC) watched in the set, s forgotten and closed at once: linger's set otherwise", true,
		func(t *tester, s int) int {
			check(unix.Shutdown(s, unix.SHUT_WR))
			inq(s)
			d, err := unix.FcntlInt(uintptr(s), unix.F_DUPFD_CLOEXEC, 0)
			check(err)
			t.forget(s)
			check(unix.Close(s))
			t.watch(d)
			return d
		},
		func(t *tester, d int) { t.eof(d); check(unix.Close(d)) }},
}

func inq(fd int) {
	_, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	check(err)
}

type tester struct {
	ln, poller, set int
	addr            unix.Sockaddr
	// What one form's cycles cost, in ns: the server's steps at close and
	// after, the client's between them, and the set's epoll_wait (which
	// many closes share under churn). Each span includes a clock read,
	// the same in every form.
	server, client, wait int64
}

func (t *tester) forget(s int) { check(unix.EpollCtl(t.poller, unix.EPOLL_CTL_DEL, s, nil)) }

func (t *tester) watch(fd int) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
	check(unix.EpollCtl(t.set, unix.EPOLL_CTL_ADD, fd, &ev))
}

func (t *tester) eof(fd int) {
	if n, err := unix.Read(fd, buf[:]); n != 0 || err != nil {
		panic(fmt.Sprint("recv after the client's close: ", n, err))
	}
}

func (t *tester) cycle(f form) {
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	check(err)
	check(unix.Connect(c, t.addr))
	s, _, err := unix.Accept4(t.ln, unix.SOCK_CLOEXEC)
	check(err)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(s)}
	check(unix.EpollCtl(t.poller, unix.EPOLL_CTL_ADD, s, &ev))
	_, err = unix.Write(c, request)
	check(err)
	_, err = unix.Read(s, buf[:])
	check(err)
	_, err = unix.Write(s, response)
	check(err)

	t0 := cpu()
	fd := f.at(t, s)
	t1 := cpu()
	for {
		n, err := unix.Read(c, buf[:])
		check(err)
		if n == 0 {
			break
		}
	}
	check(unix.Close(c))
	t2 := cpu()
	// Every form reads the set's events, raw too, so that the column
	// prices an event, not the call.
	var evs [4]unix.EpollEvent
	n, err := unix.EpollWait(t.set, evs[:], 0)
	check(err)
	if (n == 1) != f.watched {
		panic("the set's event")
	}
	t3 := cpu()
	if f.after != nil {
		f.after(t, fd)
	}
	t4 := cpu()
	t.server += (t1 - t0) + (t4 - t3)
	t.client += t2 - t1
	t.wait += t3 - t2
}

func cpu() int64 {
	var ts unix.Timespec
	check(unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts))
	return ts.Nano()
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {
	n := flag.Int("n", 1000, "cycles per form and round")
	rounds := flag.Int("rounds", 100, "rounds")
	flag.Parse()
	if *n < 1 || *rounds < 1 {
		fmt.Fprintf(os.Stderr, "kernel: -n %d and -rounds %d must be positive\n", *n, *rounds)
		os.Exit(2)
	}
	runtime.LockOSThread()
	t := &tester{}
	var err error
	t.ln, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	check(err)
	check(unix.Bind(t.ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	check(unix.Listen(t.ln, 128))
	t.addr, err = unix.Getsockname(t.ln)
	check(err)
	t.poller, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	check(err)
	t.set, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	check(err)

	type sample struct{ server, client, wait float64 }
	res := make([][]sample, len(forms))
	for r := range *rounds {
		for i := range forms {
			k := (i + r) % len(forms)
			for range 100 {
				t.cycle(forms[k])
			}
			t.server, t.client, t.wait = 0, 0, 0
			for range *n {
				t.cycle(forms[k])
			}
			d := float64(*n)
			res[k] = append(res[k], sample{float64(t.server) / d, float64(t.client) / d, float64(t.wait) / d})
		}
	}
	median := func(f func(i int) float64) float64 {
		x := make([]float64, *rounds)
		for i := range x {
			x[i] = f(i)
		}
		sort.Float64s(x)
		return x[len(x)/2]
	}
	fmt.Printf("| form | the server's ns per close, to raw | the client's, to raw | the set's event, to raw | what the server does |\n|---|--:|--:|--:|---|\n")
	for k, f := range forms {
		srv := median(func(i int) float64 { return res[k][i].server - res[0][i].server })
		cl := median(func(i int) float64 { return res[k][i].client - res[0][i].client })
		w := median(func(i int) float64 { return res[k][i].wait - res[0][i].wait })
		if k == 0 {
			srv = median(func(i int) float64 { return res[0][i].server })
			cl = median(func(i int) float64 { return res[0][i].client })
			fmt.Printf("| %s | %.0f | %.0f | | %s |\n", f.name, srv, cl, f.what)
			continue
		}
		fmt.Printf("| %s | %+.0f | %+.0f | %+.0f | %s |\n", f.name, srv, cl, w, f.what)
	}
}
