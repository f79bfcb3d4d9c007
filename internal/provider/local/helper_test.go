package local

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// helperEnv, when "1" in the environment, turns the test binary into the
// replica program the tests run (see helperMain).
const helperEnv = "ALOFT_LOCAL_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helperMain()
		return
	}
	os.Exit(m.Run())
}

// helperMain is a tiny replica: it prints its argv and environment, serves
// HTTP on $PORT and reacts to SIGTERM.
//
//	GET /healthz            200, or 503 after /unhealthy (until /healthy)
//	GET /say?msg=M          prints M
//	GET /crash              prints "crashing now", exits with status 3
//	GET /log?lines=N&size=S&burst=B&pause=MS
//	                        prints N lines of S bytes, pausing MS ms every B lines, then "log done"
//
// HELPER_IGNORE_TERM=1 makes it log and ignore SIGTERM; otherwise it logs and
// exits 0. HELPER_EXIT=N makes it exit with status N right after printing.
func helperMain() {
	fmt.Printf("argv: %s\n", strings.Join(os.Args[1:], " "))
	env := os.Environ()
	sort.Strings(env)
	for _, e := range env {
		fmt.Printf("env: %s\n", e)
	}
	if code := os.Getenv("HELPER_EXIT"); code != "" {
		n, _ := strconv.Atoi(code)
		fmt.Println("exiting at start")
		os.Exit(n)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)

	var unhealthy atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if unhealthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/unhealthy", func(w http.ResponseWriter, r *http.Request) { unhealthy.Store(true) })
	mux.HandleFunc("/healthy", func(w http.ResponseWriter, r *http.Request) { unhealthy.Store(false) })
	mux.HandleFunc("/say", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.URL.Query().Get("msg"))
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("crashing now")
		os.Exit(3)
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		lines, _ := strconv.Atoi(q.Get("lines"))
		size, _ := strconv.Atoi(q.Get("size"))
		burst, _ := strconv.Atoi(q.Get("burst"))
		pause, _ := strconv.Atoi(q.Get("pause"))
		for i := range lines {
			line := fmt.Sprintf("line %08d ", i)
			if pad := size - len(line) - 1; pad > 0 {
				line += strings.Repeat("x", pad)
			}
			fmt.Println(line)
			if burst > 0 && (i+1)%burst == 0 {
				time.Sleep(time.Duration(pause) * time.Millisecond)
			}
		}
		fmt.Println("log done")
	})

	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(2)
	}
	fmt.Println("listening on", ln.Addr())
	go http.Serve(ln, mux)
	for range sigs {
		if os.Getenv("HELPER_IGNORE_TERM") == "1" {
			fmt.Println("got SIGTERM, ignoring it")
			continue
		}
		fmt.Println("got SIGTERM, shutting down")
		os.Exit(0)
	}
}
