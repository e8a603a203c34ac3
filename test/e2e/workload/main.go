// Command e2e-workload is the workload of the real-node e2e suite (test/e2e): a static
// go-spiffe program in its own image. It reads SPIFFE_ENDPOINT_SOCKET as every go-spiffe
// client does and prints JSON on stdout.
//
//	e2e-workload watch              X509 watch until killed: one {"event":"x509",…} line per
//	                                update ({"event":"error",…} on errors); touches /tmp/ready
//	                                once it holds an SVID
//	e2e-workload fetch -audience A  one FetchX509SVID and one FetchJWTSVID; prints one object
//	                                {"x509":{…},"jwt":{…}} or {"error":…,"code":…}; exit 1 on error
//	e2e-workload ready              exit 0 when /tmp/ready exists (the readiness probe: the image
//	                                has no shell)
//	e2e-workload sleep SECONDS      sleeps (a slow postStart hook)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/status"
)

const readyFile = "/tmp/ready"

type x509Out struct {
	ID          string   `json:"id"`
	Hint        string   `json:"hint"`
	NotAfter    string   `json:"notAfter"`
	ChainLength int      `json:"chainLength"`
	SVIDCount   int      `json:"svidCount"`
	IDs         []string `json:"ids"`
	// NotAfters: each SVID's expiry by SPIFFE ID (rotations show as new values).
	NotAfters map[string]string `json:"notAfters"`
	BundleTDs []string          `json:"bundleTrustDomains"`
}

type jwtOut struct {
	ID       string   `json:"id"`
	Audience []string `json:"audience"`
	Expiry   string   `json:"expiry"`
	// Validated: the token parsed and verified against the JWT bundles from the same socket.
	Validated bool `json:"validated"`
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func errObj(err error) map[string]any {
	st, _ := status.FromError(errors.Unwrap(err))
	if st == nil {
		st, _ = status.FromError(err)
	}
	return map[string]any{"error": err.Error(), "code": st.Code().String(), "message": st.Message()}
}

func x509Of(ctx *workloadapi.X509Context) x509Out {
	s := ctx.DefaultSVID()
	tds := []string{}
	for _, b := range ctx.Bundles.Bundles() {
		tds = append(tds, b.TrustDomain().String())
	}
	sort.Strings(tds)
	ids := []string{}
	notAfters := map[string]string{}
	for _, v := range ctx.SVIDs {
		ids = append(ids, v.ID.String())
		notAfters[v.ID.String()] = v.Certificates[0].NotAfter.UTC().Format(time.RFC3339)
	}
	sort.Strings(ids)
	return x509Out{ID: s.ID.String(), Hint: s.Hint, NotAfter: s.Certificates[0].NotAfter.UTC().Format(time.RFC3339), ChainLength: len(s.Certificates), SVIDCount: len(ctx.SVIDs), IDs: ids, NotAfters: notAfters, BundleTDs: tds}
}

type watcher struct{}

func (watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	out := x509Of(c)
	emit(map[string]any{"event": "x509", "time": time.Now().UTC().Format(time.RFC3339Nano), "svid": out})
	_ = os.WriteFile(readyFile, []byte(out.ID+"\n"), 0o644)
}

func (watcher) OnX509ContextWatchError(err error) {
	o := errObj(err)
	o["event"] = "error"
	o["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	emit(o)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-workload watch|fetch|ready")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sleep":
		d, err := time.ParseDuration(os.Args[len(os.Args)-1] + "s")
		if err != nil {
			os.Exit(2)
		}
		time.Sleep(d)
	case "ready":
		if _, err := os.Stat(readyFile); err != nil {
			os.Exit(1)
		}
	case "watch":
		emit(map[string]any{"event": "start", "time": time.Now().UTC().Format(time.RFC3339Nano), "socket": os.Getenv("SPIFFE_ENDPOINT_SOCKET")})
		err := workloadapi.WatchX509Context(context.Background(), watcher{})
		emit(map[string]any{"event": "end", "error": fmt.Sprint(err)})
		os.Exit(1)
	case "fetch":
		fs := flag.NewFlagSet("fetch", flag.ExitOnError)
		aud := fs.String("audience", "e2e", "JWT-SVID audience")
		_ = fs.Parse(os.Args[2:])
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		client, err := workloadapi.New(ctx)
		if err != nil {
			emit(errObj(err))
			os.Exit(1)
		}
		defer client.Close()
		xc, err := client.FetchX509Context(ctx)
		if err != nil {
			emit(errObj(err))
			os.Exit(1)
		}
		if _, _, err := x509svid.Verify(xc.DefaultSVID().Certificates, xc.Bundles); err != nil {
			emit(map[string]any{"error": "x509 verify: " + err.Error(), "code": "Verify"})
			os.Exit(1)
		}
		j, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: *aud})
		if err != nil {
			emit(errObj(err))
			os.Exit(1)
		}
		bundles, err := client.FetchJWTBundles(ctx)
		if err != nil {
			emit(errObj(err))
			os.Exit(1)
		}
		_, verr := jwtsvid.ParseAndValidate(j.Marshal(), bundles, []string{*aud})
		emit(map[string]any{
			"x509": x509Of(xc),
			"jwt":  jwtOut{ID: j.ID.String(), Audience: j.Audience, Expiry: j.Expiry.UTC().Format(time.RFC3339), Validated: verr == nil},
		})
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
