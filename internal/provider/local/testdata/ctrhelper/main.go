// ctrhelper is the program the container tests run as an image: a static
// binary that serves HTTP on $PORT on every address and reports what it sees.
//
//	GET /healthz   200
//	GET /whoami    "<hostname> <FOO> <argv>" and whether / and /tmp are writable
//	GET /crash     exits with status 3
//
// It exits 0 on SIGTERM unless IGNORE_TERM=1.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

func main() {
	host, _ := os.Hostname()
	fmt.Printf("start %s argv=%s port=%s\n", host, strings.Join(os.Args[1:], ","), os.Getenv("PORT"))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s foo=%s argv=%s root-writable=%v tmp-writable=%v pid=%d\n",
			host, os.Getenv("FOO"), strings.Join(os.Args[1:], ","), writable("/"), writable("/tmp"), os.Getpid())
	})
	http.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("crashing now")
		os.Exit(3)
	})
	go func() {
		if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
			fmt.Println("listen:", err)
			os.Exit(2)
		}
	}()
	for range sigs {
		if os.Getenv("IGNORE_TERM") == "1" {
			fmt.Println("got SIGTERM, ignoring it")
			continue
		}
		fmt.Println("got SIGTERM, shutting down")
		os.Exit(0)
	}
}
