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
//	wlclient -socket PATH -mode wait -count M[,M2,…] [-hold]
//	                                              waits until a FetchX509SVID response carries ≥ M SVIDs
//	                                              (retrying PermissionDenied), prints the time it happened;
//	                                              with a list, one line per count in turn (same stream; a
//	                                              count below the one before waits for ≤ that many SVIDs);
//	                                              -hold keeps the stream open after the last target until
//	                                              stdin closes (the agent keeps serving a subscriber)
//	wlclient -socket PATH -mode bundle -k 1000 -conns 10 [-change-timeout 60s]
//	                                              opens K FetchX509SVID streams, prints {"ready":…} once each
//	                                              has its first response, then records on each stream the
//	                                              arrival time (unix ms) of the first response whose bundle
//	                                              differs from that stream's first; prints the summary when
//	                                              every stream has seen one (or at -change-timeout)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var (
	socket  = flag.String("socket", "", "Workload API socket path")
	mode    = flag.String("mode", "warm", "warm | newconn | jwt | streams | wait | bundle")
	n       = flag.Int("n", 1000, "measured iterations")
	warmup  = flag.Int("warmup", 50, "unmeasured iterations first")
	k       = flag.Int("k", 1000, "streams to hold (streams and bundle modes)")
	conns   = flag.Int("conns", 10, "connections to spread the streams over (streams and bundle modes)")
	count   = flag.String("count", "1", "SVIDs to wait for, or an ascending comma list of counts (wait mode)")
	hold    = flag.Bool("hold", false, "wait mode: keep the stream open after the last count until stdin closes")
	changeT = flag.Duration("change-timeout", 60*time.Second, "bundle mode: how long to wait for the bundle change once all streams are open")
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

// openStreams opens k FetchX509SVID streams over len(ccs) connections under ctx, each
// connection opening its share one after another. first is called with each stream's first
// response; every later response on that stream goes to update (from that stream's own
// goroutine, which keeps draining so the agent's writes never block). Returns once every
// stream has its first response (or failed to).
func openStreams(ctx context.Context, ccs []*grpc.ClientConn, k int, first func(i int, resp *workload.X509SVIDResponse), update func(i int, resp *workload.X509SVIDResponse)) (opened, failed int, firstErr string) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for c := range ccs {
		share := k / len(ccs)
		if c < k%len(ccs) {
			share++
		}
		wg.Add(1)
		go func(cc *grpc.ClientConn, share int) {
			defer wg.Done()
			for j := 0; j < share; j++ {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				stream, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
				var resp *workload.X509SVIDResponse
				if err == nil {
					resp, err = stream.Recv()
				}
				if err != nil {
					mu.Lock()
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				first(i, resp)
				mu.Lock()
				opened++
				mu.Unlock()
				go func() {
					for {
						resp, err := stream.Recv()
						if err != nil {
							return
						}
						update(i, resp)
					}
				}()
			}
		}(ccs[c], share)
	}
	wg.Wait()
	return opened, failed, firstErr
}

func dialAll() []*grpc.ClientConn {
	ccs := make([]*grpc.ClientConn, *conns)
	for i := range ccs {
		ccs[i] = dial()
	}
	return ccs
}

func holdStreams() {
	ccs := dialAll()
	ctx, cancel := context.WithCancel(secured(context.Background()))
	start := time.Now()
	opened, failed, firstErr := openStreams(ctx, ccs, *k, func(int, *workload.X509SVIDResponse) {}, func(int, *workload.X509SVIDResponse) {})
	emit(map[string]any{"ready": true, "mode": "streams", "open": opened, "failed": failed, "first_error": firstErr, "open_ms": ms(time.Since(start)), "conns": *conns})
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	for _, cc := range ccs {
		_ = cc.Close()
	}
}

// firstBundle is the trust bundle a response carries (the first SVID's; all carry the same).
func firstBundle(resp *workload.X509SVIDResponse) []byte {
	if len(resp.Svids) == 0 {
		return nil
	}
	return resp.Svids[0].Bundle
}

// bundleWatch: K streams; per stream, when the first response whose bundle differs from that
// stream's first arrived.
func bundleWatch() {
	ccs := dialAll()
	ctx, cancel := context.WithCancel(secured(context.Background()))
	defer cancel()
	initial := make([][]byte, *k)
	arrived := make([]float64, *k) // unix ms; 0 = not yet
	var mu sync.Mutex
	changed := 0
	want := *k // lowered to the streams that opened
	allChanged := make(chan struct{})
	start := time.Now()
	opened, failed, firstErr := openStreams(ctx, ccs, *k,
		func(i int, resp *workload.X509SVIDResponse) {
			mu.Lock()
			initial[i] = firstBundle(resp)
			mu.Unlock()
		},
		func(i int, resp *workload.X509SVIDResponse) {
			at := float64(time.Now().UnixNano()) / 1e6
			mu.Lock()
			defer mu.Unlock()
			if arrived[i] != 0 || bytes.Equal(firstBundle(resp), initial[i]) {
				return
			}
			arrived[i] = at
			changed++
			if changed == want {
				close(allChanged)
			}
		})
	// Streams that failed to open are reported (ready line), not fatal: the rest are measured.
	mu.Lock()
	want = opened
	if opened == 0 {
		close(allChanged)
	}
	mu.Unlock()
	emit(map[string]any{"ready": true, "mode": "bundle", "open": opened, "failed": failed, "first_error": firstErr, "open_ms": ms(time.Since(start)), "conns": *conns})
	select {
	case <-allChanged:
	case <-time.After(*changeT):
	}
	mu.Lock()
	times := make([]float64, 0, changed)
	for _, a := range arrived {
		if a != 0 {
			times = append(times, a)
		}
	}
	mu.Unlock()
	sort.Float64s(times)
	at := func(q float64) float64 {
		if len(times) == 0 {
			return -1
		}
		i := int(q * float64(len(times)))
		if i >= len(times) {
			i = len(times) - 1
		}
		return times[i]
	}
	emit(map[string]any{"mode": "bundle", "open": opened, "changed": len(times), "first_unix_ms": at(0), "p50_unix_ms": at(0.5), "p99_unix_ms": at(0.99), "max_unix_ms": at(1)})
	cancel()
	for _, cc := range ccs {
		_ = cc.Close()
	}
}

// target is one step of wait mode: a response carrying ≥ n SVIDs (up) or ≤ n (down).
type target struct {
	n  int
	up bool
}

func (t target) met(svids int) bool {
	if t.up {
		return svids >= t.n
	}
	return svids <= t.n
}

// parseCounts reads -count: each count above the one before it waits for at least that many
// SVIDs, each below it for at most that many (the first: at least).
func parseCounts(list string) []target {
	var ts []target
	prev := 0
	for _, f := range strings.Split(list, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 0 || c == prev {
			fail("-count %q: want counts, each different from the one before", list)
		}
		ts = append(ts, target{n: c, up: c > prev})
		prev = c
	}
	return ts
}

// waitFor prints a line as a response first meets each count in turn, on one stream
// (reopened while the agent answers PermissionDenied or Unavailable).
func waitFor() {
	targets := parseCounts(*count)
	cc := dial()
	defer cc.Close()
	deadline := time.Now().Add(*timeout)
	start := time.Now()
	last := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(secured(context.Background()), deadline)
		stream, err := workload.NewSpiffeWorkloadAPIClient(cc).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		for err == nil {
			var resp *workload.X509SVIDResponse
			resp, err = stream.Recv()
			if err != nil {
				break
			}
			last = len(resp.Svids)
			for len(targets) > 0 && targets[0].met(len(resp.Svids)) {
				emit(map[string]any{"mode": "wait", "count": targets[0].n, "svids": len(resp.Svids), "bytes": proto.Size(resp), "done_unix_ms": float64(time.Now().UnixNano()) / 1e6, "waited_ms": ms(time.Since(start))})
				targets = targets[1:]
			}
			if len(targets) == 0 {
				if *hold {
					// Keep the subscription (draining updates) until stdin closes.
					go func() {
						for {
							if _, err := stream.Recv(); err != nil {
								return
							}
						}
					}()
					_, _ = io.Copy(io.Discard, os.Stdin)
				}
				cancel()
				return
			}
		}
		cancel()
		if st, ok := status.FromError(err); ok && st.Code() != codes.PermissionDenied && st.Code() != codes.Unavailable && st.Code() != codes.DeadlineExceeded && st.Code() != codes.Canceled {
			fail("wait: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fail("wait: the last response carried %d SVIDs, waiting for %d after %s", last, targets[0].n, *timeout)
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
	case "bundle":
		bundleWatch()
	default:
		fail("unknown -mode %q", *mode)
	}
}
