// An echo peer on Go's crypto/tls for the interop matrix, run as a child process
// and built at test time by tests/interop/stacks.py (`go build`, standard library
// only):
//
//	go_peer role=server|client version=1.2|1.3 cafile=PATH [port=N]
//	        [certificate=PATH key=PATH] [renegotiation=never|once|freely]
//
// The line protocol is the one every peer built from source here speaks (see
// stacks.LinePeer): a server listens on 127.0.0.1, a port of its own, and prints
// "LISTENING <port>"; a client connects to 127.0.0.1:<port>. After the handshake it
// prints "HANDSHAKE <version>" and sends back every byte it reads. Commands on
// stdin, one a line: "S <hex>" sends those bytes, "Q" closes (close_notify);
// "K"/"k"/"R" (key update, renegotiation) are answered "UNSUPPORTED <cmd>": Go's
// crypto/tls has no call that starts either; it answers a KeyUpdate that asks for
// one and, as a client with renegotiation=once|freely, follows a HelloRequest,
// both inside its reads. The end of the connection is "CLOSED" (the peer's
// close_notify) or "ERROR <Go's own error text>".
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
)

var outMu sync.Mutex

// say prints one line of the protocol; stdout is a pipe, so each line is written
// whole and at once.
func say(format string, args ...interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	say("ERROR "+format, args...)
	os.Exit(1)
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return fmt.Sprintf("0x%04x", v)
}

func main() {
	opts := map[string]string{"version": "1.3", "renegotiation": "never"}
	for _, a := range os.Args[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			fail("bad argument %q", a)
		}
		opts[k] = v
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}
	if opts["version"] == "1.2" {
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	}
	pem, err := os.ReadFile(opts["cafile"])
	if err != nil {
		fail("%v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)

	var conn *tls.Conn
	if opts["role"] == "server" {
		pair, err := tls.LoadX509KeyPair(opts["certificate"], opts["key"])
		if err != nil {
			fail("%v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail("%v", err)
		}
		say("LISTENING %d", ln.Addr().(*net.TCPAddr).Port)
		raw, err := ln.Accept()
		ln.Close() // one connection: nothing else may connect
		if err != nil {
			fail("%v", err)
		}
		conn = tls.Server(raw, cfg)
	} else {
		cfg.RootCAs = pool
		cfg.ServerName = "localhost"
		switch opts["renegotiation"] {
		case "once":
			cfg.Renegotiation = tls.RenegotiateOnceAsClient
		case "freely":
			cfg.Renegotiation = tls.RenegotiateFreelyAsClient
		default:
			cfg.Renegotiation = tls.RenegotiateNever // Go's default
		}
		raw, err := net.Dial("tcp", "127.0.0.1:"+opts["port"])
		if err != nil {
			fail("%v", err)
		}
		conn = tls.Client(raw, cfg)
	}
	if err := conn.Handshake(); err != nil {
		fail("%v", err)
	}
	say("HANDSHAKE %s", versionName(conn.ConnectionState().Version))

	go commands(conn)

	buf := make([]byte, 65536)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				fail("%v", werr)
			}
		}
		if errors.Is(err, io.EOF) {
			say("CLOSED")
			conn.Close()
			os.Exit(0)
		}
		if err != nil {
			fail("%v", err)
		}
	}
}

// commands runs the stdin commands beside the echo loop: tls.Conn allows one Read
// and one Write at a time from different goroutines, and serialises Writes.
func commands(conn *tls.Conn) {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<22)
	for in.Scan() {
		line := in.Text()
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd {
		case "S":
			data, err := hex.DecodeString(arg)
			if err != nil {
				fail("bad command %q", line)
			}
			if _, err := conn.Write(data); err != nil {
				fail("%v", err)
			}
			say("DONE S")
		case "Q":
			conn.Close()
			say("DONE Q")
			os.Exit(0)
		default:
			say("UNSUPPORTED %s", cmd)
		}
	}
	// stdin closed: the harness is gone, and so is this peer.
	os.Exit(0)
}
