// Command wlclient drives a SPIFFE Workload API socket and prints one JSON object per run on
// stdout, so bench/side-by-side.ts can compare two agents with the same client. It uses
// go-spiffe's generated Workload API stubs directly (no SVID parsing on the client), so a
// fetch is timed from opening the stream to receiving the first response.
//
//	wlclient -socket PATH -mode warm    -n 2000   one connection: open stream, first X509SVIDResponse, cancel
//	wlclient -socket PATH -mode newconn -n 500    new connection per fetch (dial, fetch, close)
//	wlclient -socket PATH -mode jwt     -n 2000   FetchJWTSVID on one connection (after one warm-up call, so cached)
//	                                              (-duration 60s instead of -n: loop for that long)
//	wlclient -socket PATH -mode streams -k 1000 -conns 10
//	                                              opens K FetchX509SVID streams over C connections, prints
//	                                              {"ready":…} once each has its first response, holds them
//	                                              until stdin closes, then prints the summary
//	wlclient -socket PATH -mode wait -count M     waits until a FetchX509SVID response carries ≥ M SVIDs
//	                                              (retrying PermissionDenied), prints the time it happened
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var (
	socket  = flag.String("socket", "", "Workload API socket path")
	mode    = flag.String("mode", "warm", "warm | newconn | jwt | streams | wait")
	n       = flag.Int("n", 1000, "measured iterations")
	warmup  = flag.Int("warmup", 50, "unmeasured iterations first")
	k       = flag.Int("k", 1000, "streams to hold (streams mode)")
	conns   = flag.Int("conns", 10, "connections to spread the streams over (streams mode)")
	count   = flag.Int("count", 1, "SVIDs to wait for (wait mode)")
	aud     = flag.String("aud", "bench", "JWT audience")
	timeout = flag.Duration("timeout", 120*time.Second, "overall limit")
	dur     = flag.Duration("duration", 0, "warm/newconn/jwt: measure for this long instead of -n iterations")
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wlclient: %s\n", fmt.Sprintf(format, args...))
	os.Exit(1)
}

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail("json: %v", err)
	}
	fmt.Println(string(b))
}

func dial() *grpc.ClientConn {
	cc, err := grpc.NewClient("unix:"+*socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		fail("dial: %v", err)
	}
	return cc
}

func secured(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

// fetchX509 opens a FetchX509SVID stream, waits for its first response and cancels it.
func fetchX509(cc *grpc.ClientConn) (int, error) {
	ctx, cancel := context.WithTimeout(secured(context.Background()), 30*time.Second)
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		return 0, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	return len(resp.Svids), nil
}

func fetchJWT(cc *grpc.ClientConn) (int, error) {
	ctx, cancel := context.WithTimeout(secured(context.Background()), 30*time.Second)
	defer cancel()
	resp, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{*aud}})
	if err != nil {
		return 0, err
	}
	return len(resp.Svids), nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return -1
	}
	i := int(q * float64(len(sorted)))
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return ms(sorted[i])
}

type summary struct {
	Mode    string  `json:"mode"`
	N       int     `json:"n"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	Rate    float64 `json:"rate_per_s"`
	Svids   int     `json:"svids"`
	Errors  int     `json:"errors"`
	FirstEr string  `json:"first_error,omitempty"`
}

// loop runs warmup unmeasured then n measured calls of one, sequentially.
func loop(name string, one func() (int, error)) {
	var svids, errs int
	var firstErr string
	for i := 0; i < *warmup; i++ {
		if _, err := one(); err != nil && firstErr == "" {
			firstErr = "warm-up: " + err.Error()
		}
	}
	lat := make([]time.Duration, 0, *n)
	start := time.Now()
	for i := 0; (*dur > 0 && time.Since(start) < *dur) || (*dur == 0 && i < *n); i++ {
		t0 := time.Now()
		c, err := one()
		if err != nil {
			errs++
			if firstErr == "" {
				firstErr = err.Error()
			}
			continue
		}
		lat = append(lat, time.Since(t0))
		svids = c
	}
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s := summary{Mode: name, N: len(lat), P50: quantile(lat, 0.5), P99: quantile(lat, 0.99), Rate: float64(len(lat)) / elapsed.Seconds(), Svids: svids, Errors: errs, FirstEr: firstErr}
	if len(lat) > 0 {
		s.Max = ms(lat[len(lat)-1])
	}
	emit(s)
}

func holdStreams() {
	ccs := make([]*grpc.ClientConn, *conns)
	for i := range ccs {
		ccs[i] = dial()
	}
	ctx, cancel := context.WithCancel(secured(context.Background()))
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened, failed := 0, 0
	firstErr := ""
	start := time.Now()
	// Opens are paced by connection: each connection opens its share one after another.
	for c := 0; c < *conns; c++ {
		share := *k / *conns
		if c < *k%*conns {
			share++
		}
		wg.Add(1)
		go func(cc *grpc.ClientConn, share int) {
			defer wg.Done()
			for i := 0; i < share; i++ {
				stream, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
				if err == nil {
					_, err = stream.Recv()
				}
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					opened++
					// Keep draining updates so the agent's writes never block.
					go func() {
						for {
							if _, err := stream.Recv(); err != nil {
								return
							}
						}
					}()
				}
				mu.Unlock()
			}
		}(ccs[c], share)
	}
	wg.Wait()
	emit(map[string]any{"ready": true, "mode": "streams", "open": opened, "failed": failed, "first_error": firstErr, "open_ms": ms(time.Since(start)), "conns": *conns})
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	for _, cc := range ccs {
		_ = cc.Close()
	}
}

func waitFor() {
	cc := dial()
	defer cc.Close()
	deadline := time.Now().Add(*timeout)
	start := time.Now()
	best := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(secured(context.Background()), deadline)
		stream, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		for err == nil {
			var resp *workload.X509SVIDResponse
			resp, err = stream.Recv()
			if err != nil {
				break
			}
			if len(resp.Svids) > best {
				best = len(resp.Svids)
			}
			if len(resp.Svids) >= *count {
				cancel()
				emit(map[string]any{"mode": "wait", "svids": len(resp.Svids), "done_unix_ms": float64(time.Now().UnixNano()) / 1e6, "waited_ms": ms(time.Since(start))})
				return
			}
		}
		cancel()
		if st, ok := status.FromError(err); ok && st.Code() != codes.PermissionDenied && st.Code() != codes.Unavailable && st.Code() != codes.DeadlineExceeded && st.Code() != codes.Canceled {
			fail("wait: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fail("wait: only %d of %d SVIDs after %s", best, *count, *timeout)
}

func main() {
	flag.Parse()
	if *socket == "" {
		fail("-socket is required")
	}
	time.AfterFunc(*timeout+10*time.Second, func() { fail("timed out") })
	switch *mode {
	case "warm":
		cc := dial()
		defer cc.Close()
		loop("warm", func() (int, error) { return fetchX509(cc) })
	case "newconn":
		loop("newconn", func() (int, error) {
			cc := dial()
			defer cc.Close()
			return fetchX509(cc)
		})
	case "jwt":
		cc := dial()
		defer cc.Close()
		loop("jwt", func() (int, error) { return fetchJWT(cc) })
	case "streams":
		holdStreams()
	case "wait":
		waitFor()
	default:
		fail("unknown -mode %q", *mode)
	}
}
