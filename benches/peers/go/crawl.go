// Crawler peer for benches/peers/src/bin/crawl.rs: net/http, one goroutine per worker.
//
// Run: go build -o /tmp/crawl-go crawl.go && taskset -c 1 /tmp/crawl-go http://127.0.0.1:PORT/page/0.html 100
// Prints "RESULT pages=N bytes=N secs=S cpu=S errors=N" like the Rust peers. Links are found
// the way every peer finds them: each href="..." in the body, root-relative paths only.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func main() {
	seed := os.Args[1]
	concurrency, _ := strconv.Atoi(os.Args[2])
	u, err := url.Parse(seed)
	if err != nil {
		panic(err)
	}
	origin := u.Scheme + "://" + u.Host
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		DisableCompression:  true,
	}}

	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	queue := []string{u.Path}
	seen := map[string]bool{u.Path: true}
	busy := 0
	pages, total, errors := 0, 0, 0
	marker := []byte(`href="`)

	start := time.Now()
	cpu0 := cpuSeconds()
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				for len(queue) == 0 && busy > 0 {
					cond.Wait()
				}
				if len(queue) == 0 {
					mu.Unlock()
					cond.Broadcast()
					return
				}
				path := queue[0]
				queue = queue[1:]
				busy++
				mu.Unlock()

				var links []string
				n := 0
				failed := false
				resp, err := client.Get(origin + path)
				if err != nil {
					failed = true
				} else {
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 {
						failed = true
					}
					n = len(body)
					rest := body
					for {
						i := bytes.Index(rest, marker)
						if i < 0 {
							break
						}
						rest = rest[i+len(marker):]
						j := bytes.IndexByte(rest, '"')
						if j < 0 {
							break
						}
						if j > 0 && rest[0] == '/' {
							links = append(links, string(rest[:j]))
						}
						rest = rest[j+1:]
					}
				}

				mu.Lock()
				pages++
				total += n
				if failed {
					errors++
				}
				for _, l := range links {
					if !seen[l] {
						seen[l] = true
						queue = append(queue, l)
					}
				}
				busy--
				mu.Unlock()
				cond.Broadcast()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("RESULT pages=%d bytes=%d secs=%.6f cpu=%.6f errors=%d\n", pages, total, secs, cpuSeconds()-cpu0, errors)
}
