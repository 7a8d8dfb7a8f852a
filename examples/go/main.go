// A Go server under forkd. Go binaries are often statically linked (CGO_ENABLED=0), and the bind
// takeover cannot load into those, so this one takes the listener forkd passes instead, with the
// systemd convention (LISTEN_FDS, fd 3 on), and says READY=1 on NOTIFY_SOCKET once serving
// (`ready: notify`, forkd.yaml beside this). It works the same however it is linked, and it also
// runs alone: without LISTEN_FDS it binds :8080 itself.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func listener() (net.Listener, error) {
	if n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); n > 0 && os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		return net.FileListener(os.NewFile(3, "listen0"))
	}
	return net.Listen("tcp", ":8080")
}

// notifyReady sends READY=1 to NOTIFY_SOCKET, as sd_notify(3) does. Go reads a leading "@" as
// an abstract address itself.
func notifyReady() {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Printf("NOTIFY_SOCKET: %v", err)
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("READY=1"))
}

func main() {
	l, err := listener()
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d (worker %s)\n", os.Getpid(), os.Getenv("FORKD_WORKER_ID"))
	})
	notifyReady()
	log.Fatal(http.Serve(l, nil))
}
