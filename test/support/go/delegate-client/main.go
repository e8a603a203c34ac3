// Command delegate-client calls the agent's admin socket with the generated clients of
// github.com/spiffe/spire-api-sdk: the Delegated Identity API, as a delegate such as Cilium
// does, and Debug/GetInfo. It prints one JSON line per response on stdout and, when a call
// fails, one line {"error":{"code":…,"message":…}} and exits with status 3.
//
// Usage: delegate-client -socket PATH [-timeout 30s] COMMAND [flags]
//
//	x509       [-selector type:value]… [-pid N] [-updates N]  SubscribeToX509SVIDs
//	bundles    [-updates N]                                   SubscribeToX509Bundles
//	jwtbundles [-updates N]                                   SubscribeToJWTBundles
//	jwt        -audience A… [-selector type:value]… [-pid N]  FetchJWTSVIDs
//	getinfo                                                   Debug/GetInfo
//
// Keys are never printed: an X509-SVID line says whether its key matches its leaf.
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	debugv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/debug/v1"
	delegatedidentityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

type selectorFlags []*types.Selector

func (s *selectorFlags) String() string { return fmt.Sprint(*s) }
func (s *selectorFlags) Set(v string) error {
	typ, value, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("selector %q must be type:value", v)
	}
	*s = append(*s, &types.Selector{Type: typ, Value: value})
	return nil
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
}

func fail(err error) {
	st := status.Convert(err)
	emit(map[string]any{"error": map[string]any{"code": st.Code().String(), "message": st.Message()}})
	os.Exit(3)
}

type svidLine struct {
	ID         string   `json:"id"`
	ExpiresAt  int64    `json:"expires_at"`
	Hint       string   `json:"hint"`
	Chain      []string `json:"chain"`
	Serial     string   `json:"serial"`
	LeafURI    string   `json:"leaf_uri"`
	KeyMatches bool     `json:"key_matches"`
}

func id(s *types.SPIFFEID) string {
	if s == nil {
		return ""
	}
	return "spiffe://" + s.TrustDomain + s.Path
}

func describeSVID(s *delegatedidentityv1.X509SVIDWithKey) svidLine {
	line := svidLine{ID: id(s.X509Svid.GetId()), ExpiresAt: s.X509Svid.GetExpiresAt(), Hint: s.X509Svid.GetHint()}
	for _, der := range s.X509Svid.GetCertChain() {
		line.Chain = append(line.Chain, base64.StdEncoding.EncodeToString(der))
	}
	if len(s.X509Svid.GetCertChain()) == 0 {
		return line
	}
	leaf, err := x509.ParseCertificate(s.X509Svid.GetCertChain()[0])
	if err != nil {
		return line
	}
	line.Serial = leaf.SerialNumber.Text(16)
	if len(leaf.URIs) == 1 {
		line.LeafURI = leaf.URIs[0].String()
	}
	key, err := x509.ParsePKCS8PrivateKey(s.X509SvidKey)
	if err == nil {
		if signer, ok := key.(crypto.Signer); ok {
			if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); ok {
				line.KeyMatches = pub.Equal(leaf.PublicKey)
			}
		}
	}
	return line
}

func main() {
	socket := flag.String("socket", "", "admin socket path")
	timeout := flag.Duration("timeout", 30*time.Second, "overall deadline")
	flag.Parse()
	if *socket == "" || flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: delegate-client -socket PATH COMMAND [flags]")
		os.Exit(2)
	}
	cmd := flag.Arg(0)
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	var selectors selectorFlags
	var audience stringsFlag
	fs.Var(&selectors, "selector", "type:value (repeatable)")
	fs.Var(&audience, "audience", "audience (repeatable)")
	pid := fs.Int("pid", 0, "workload PID")
	updates := fs.Int("updates", 1, "stream responses to print before closing")
	_ = fs.Parse(flag.Args()[1:])

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	delegated := delegatedidentityv1.NewDelegatedIdentityClient(conn)

	switch cmd {
	case "x509":
		stream, err := delegated.SubscribeToX509SVIDs(ctx, &delegatedidentityv1.SubscribeToX509SVIDsRequest{Selectors: selectors, Pid: int32(*pid)})
		if err != nil {
			fail(err)
		}
		for i := 0; i < *updates; i++ {
			resp, err := stream.Recv()
			if err != nil {
				fail(err)
			}
			svids := []svidLine{}
			for _, s := range resp.X509Svids {
				svids = append(svids, describeSVID(s))
			}
			emit(map[string]any{"svids": svids, "federates_with": resp.FederatesWith})
		}
	case "bundles":
		stream, err := delegated.SubscribeToX509Bundles(ctx, &delegatedidentityv1.SubscribeToX509BundlesRequest{})
		if err != nil {
			fail(err)
		}
		for i := 0; i < *updates; i++ {
			resp, err := stream.Recv()
			if err != nil {
				fail(err)
			}
			out := map[string]string{}
			for td, der := range resp.CaCertificates {
				out[td] = base64.StdEncoding.EncodeToString(der)
			}
			emit(map[string]any{"ca_certificates": out})
		}
	case "jwtbundles":
		stream, err := delegated.SubscribeToJWTBundles(ctx, &delegatedidentityv1.SubscribeToJWTBundlesRequest{})
		if err != nil {
			fail(err)
		}
		for i := 0; i < *updates; i++ {
			resp, err := stream.Recv()
			if err != nil {
				fail(err)
			}
			out := map[string]string{}
			for td, jwks := range resp.Bundles {
				out[td] = string(jwks)
			}
			emit(map[string]any{"bundles": out})
		}
	case "jwt":
		resp, err := delegated.FetchJWTSVIDs(ctx, &delegatedidentityv1.FetchJWTSVIDsRequest{Audience: audience, Selectors: selectors, Pid: int32(*pid)})
		if err != nil {
			fail(err)
		}
		svids := []map[string]any{}
		for _, s := range resp.Svids {
			svids = append(svids, map[string]any{"id": id(s.Id), "token": s.Token, "expires_at": s.ExpiresAt, "issued_at": s.IssuedAt, "hint": s.Hint})
		}
		emit(map[string]any{"svids": svids})
	case "getinfo":
		resp, err := debugv1.NewDebugClient(conn).GetInfo(ctx, &debugv1.GetInfoRequest{})
		if err != nil {
			fail(err)
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp)
		if err != nil {
			fail(err)
		}
		fmt.Println(string(b))
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd)
		os.Exit(2)
	}
}
