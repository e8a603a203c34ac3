// Command interop checks the agent's Workload API with go-spiffe's public API.
//
// Each subcommand prints one "CHECK <name>: <fact>" line per fact it verified and exits 0, or
// prints "FAIL: <reason>" on stderr and exits 1 at the first mismatch. The Workload API address
// comes from SPIFFE_ENDPOINT_SOCKET, as a real workload would get it.
//
//	interop x509        -id ID [-absent-td TD] [-oneshots N]
//	interop watch       -id ID [-timeout 45s]
//	interop jwt         -id ID -aud A -aud B [-print-token]
//	interop federation  -id ID -td TD -roots SHA256[,…] -kids KID[,…] [-token JWT -token-id ID -aud A] [-x509-only-td TD]
//	interop mtls-server -id ID -allow ID -expect accept,refuse,… [-timeout 60s]
//	interop mtls-client -id ID -connect HOST:PORT -server-id ID [-expect-refused]
//	interop watch-end   -want CODE [-timeout 60s]
//	interop noheader
//	interop authority   -id ID -value AUTHORITY
//	interop noidentity  [-wait 4s]
//	interop nosocket
package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func check(name, format string, args ...any) {
	fmt.Printf("CHECK %s: %s\n", name, fmt.Sprintf(format, args...))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: %s\n", fmt.Sprintf(format, args...))
	os.Exit(1)
}

func must[T any](v T, err error) func(what string) T {
	return func(what string) T {
		if err != nil {
			fail("%s: %v", what, err)
		}
		return v
	}
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseID(flagName, s string) spiffeid.ID {
	if s == "" {
		fail("-%s is required", flagName)
	}
	return must(spiffeid.FromString(s))("-" + flagName)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func keyMatchesLeaf(svid *x509svid.SVID) bool {
	pub, ok := svid.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(svid.Certificates[0].PublicKey)
}

func keyUsageNames(ku x509.KeyUsage) string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	out := []string{}
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, "+")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: interop <x509|watch|jwt|federation|mtls-server|mtls-client|noidentity|nosocket> [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	fmt.Printf("go-spiffe interop %s as uid %d, SPIFFE_ENDPOINT_SOCKET=%s\n", cmd, os.Getuid(), os.Getenv("SPIFFE_ENDPOINT_SOCKET"))
	switch cmd {
	case "x509":
		id := fs.String("id", "", "expected default SPIFFE ID")
		absent := fs.String("absent-td", "", "a trust domain whose bundle must NOT be present")
		oneshots := fs.Int("oneshots", 20, "number of one-shot FetchX509SVID calls to make")
		_ = fs.Parse(args)
		runX509(parseID("id", *id), *absent, *oneshots)
	case "watch":
		id := fs.String("id", "", "SPIFFE ID whose rotation to watch")
		timeout := fs.Duration("timeout", 45*time.Second, "how long to wait for a rotation")
		_ = fs.Parse(args)
		runWatch(parseID("id", *id), *timeout)
	case "jwt":
		id := fs.String("id", "", "expected SPIFFE ID")
		var auds listFlag
		fs.Var(&auds, "aud", "audience (repeat for more)")
		printToken := fs.Bool("print-token", false, "print the token as a TOKEN line")
		_ = fs.Parse(args)
		if len(auds) < 1 {
			fail("at least one -aud is required")
		}
		runJWT(parseID("id", *id), auds, *printToken)
	case "federation":
		id := fs.String("id", "", "expected default SPIFFE ID")
		td := fs.String("td", "", "federated trust domain")
		roots := fs.String("roots", "", "comma-separated SHA-256 fingerprints of the federated X.509 roots")
		kids := fs.String("kids", "", "comma-separated key IDs of the federated JWT keys")
		token := fs.String("token", "", "a JWT-SVID issued in the federated trust domain")
		tokenID := fs.String("token-id", "", "the SPIFFE ID the token must carry")
		aud := fs.String("aud", "", "the audience the token was issued for")
		x509Only := fs.String("x509-only-td", "", "a federated trust domain with X.509 roots and no JWT keys")
		_ = fs.Parse(args)
		runFederation(parseID("id", *id), must(spiffeid.TrustDomainFromString(*td))("-td"), splitList(*roots), splitList(*kids), *token, *tokenID, *aud, *x509Only)
	case "mtls-server":
		id := fs.String("id", "", "expected own SPIFFE ID")
		allow := fs.String("allow", "", "the only client SPIFFE ID to authorize")
		expect := fs.String("expect", "accept", "comma-separated outcomes expected, in order: accept or refuse")
		timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
		_ = fs.Parse(args)
		runMTLSServer(parseID("id", *id), parseID("allow", *allow), splitList(*expect), *timeout)
	case "mtls-client":
		id := fs.String("id", "", "expected own SPIFFE ID")
		addr := fs.String("connect", "", "server address")
		serverID := fs.String("server-id", "", "the server SPIFFE ID to authorize")
		refused := fs.Bool("expect-refused", false, "the server must refuse this client")
		_ = fs.Parse(args)
		runMTLSClient(parseID("id", *id), *addr, parseID("server-id", *serverID), *refused)
	case "watch-end":
		want := fs.String("want", "", "the gRPC code the stream must end with (e.g. PermissionDenied, Unavailable)")
		timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
		_ = fs.Parse(args)
		runWatchEnd(*want, *timeout)
	case "noheader":
		_ = fs.Parse(args)
		runNoHeader()
	case "authority":
		id := fs.String("id", "", "expected default SPIFFE ID")
		value := fs.String("value", "", "the HTTP/2 :authority to send")
		_ = fs.Parse(args)
		runAuthority(parseID("id", *id), *value)
	case "noidentity":
		wait := fs.Duration("wait", 4*time.Second, "how long the source may keep retrying")
		_ = fs.Parse(args)
		runNoIdentity(*wait)
	case "nosocket":
		_ = fs.Parse(args)
		runNoSocket()
	default:
		fail("unknown subcommand %q", cmd)
	}
	fmt.Println("OK")
}

// x509: X509Source, default SVID, x509svid.Verify, key match, bundles, one-shot calls.
func runX509(want spiffeid.ID, absentTD string, oneshots int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	source := must(workloadapi.NewX509Source(ctx))("NewX509Source")
	defer source.Close()

	svid := must(source.GetX509SVID())("X509Source.GetX509SVID")
	if svid.ID != want {
		fail("default SVID is %s, want %s", svid.ID, want)
	}
	leaf := svid.Certificates[0]
	check("x509-source", "default SVID %s, serial %s, expires %s (in %s), chain length %d, hint %q",
		svid.ID, leaf.SerialNumber.Text(16), leaf.NotAfter.UTC().Format(time.RFC3339), time.Until(leaf.NotAfter).Round(time.Second), len(svid.Certificates), svid.Hint)

	verifiedID, chains := func() (spiffeid.ID, [][]*x509.Certificate) {
		id, chains, err := x509svid.Verify(svid.Certificates, source)
		if err != nil {
			fail("x509svid.Verify against the X509Source bundle: %v", err)
		}
		return id, chains
	}()
	if verifiedID != want {
		fail("x509svid.Verify returned %s, want %s", verifiedID, want)
	}
	root := chains[0][len(chains[0])-1]
	check("x509-verify", "x509svid.Verify: %s chains to root %q (sha256 %s…)", verifiedID, root.Subject.String(), fingerprint(root)[:16])

	if !keyMatchesLeaf(svid) {
		fail("the SVID private key does not match the leaf public key")
	}
	check("x509-key", "private key (%T) matches the leaf public key", svid.PrivateKey)

	if !slices.ContainsFunc(leaf.ExtKeyUsage, func(u x509.ExtKeyUsage) bool { return u == x509.ExtKeyUsageServerAuth }) ||
		!slices.ContainsFunc(leaf.ExtKeyUsage, func(u x509.ExtKeyUsage) bool { return u == x509.ExtKeyUsageClientAuth }) {
		fail("leaf EKU %v lacks serverAuth or clientAuth", leaf.ExtKeyUsage)
	}
	check("x509-profile", "leaf CA=%v, key usage %s, EKU serverAuth+clientAuth, URI SANs %v", leaf.IsCA, keyUsageNames(leaf.KeyUsage), leaf.URIs)

	ownBundle := must(source.GetX509BundleForTrustDomain(want.TrustDomain()))("X509Source bundle for own trust domain")
	if ownBundle.Empty() {
		fail("the bundle for %s is empty", want.TrustDomain())
	}
	check("x509-bundle", "bundle for %s has %d root(s)", want.TrustDomain(), len(ownBundle.X509Authorities()))
	if absentTD != "" {
		td := must(spiffeid.TrustDomainFromString(absentTD))("-absent-td")
		if b, err := source.GetX509BundleForTrustDomain(td); err == nil {
			fail("an entry without federates_with still sees a bundle for %s (%d roots)", td, len(b.X509Authorities()))
		}
		check("x509-no-federation", "no bundle for %s (entry does not federate with it)", td)
	}

	// One-shot calls: each opens a stream, reads one message and cancels.
	client := must(workloadapi.New(ctx))("workloadapi.New")
	defer client.Close()
	x509ctx := must(client.FetchX509Context(ctx))("FetchX509Context")
	ids := make([]string, 0, len(x509ctx.SVIDs))
	for _, s := range x509ctx.SVIDs {
		ids = append(ids, s.ID.String())
	}
	if x509ctx.DefaultSVID().ID != want {
		fail("FetchX509Context default SVID is %s, want %s", x509ctx.DefaultSVID().ID, want)
	}
	tds := []string{}
	for _, b := range x509ctx.Bundles.Bundles() {
		tds = append(tds, b.TrustDomain().String())
	}
	check("x509-context", "FetchX509Context: SVIDs %v, bundles for %v", ids, tds)

	bundles := must(client.FetchX509Bundles(ctx))("FetchX509Bundles")
	if !bundles.Has(want.TrustDomain()) {
		fail("FetchX509Bundles lacks the agent's own trust domain %s", want.TrustDomain())
	}
	check("x509-bundles", "FetchX509Bundles: %d bundle(s), including %s", bundles.Len(), want.TrustDomain())

	jwtBundles := must(client.FetchJWTBundles(ctx))("FetchJWTBundles")
	own := must(jwtBundles.GetJWTBundleForTrustDomain(want.TrustDomain()))("FetchJWTBundles own trust domain")
	check("jwt-bundles", "FetchJWTBundles: %d bundle(s), %s has key IDs %v", jwtBundles.Len(), want.TrustDomain(), sortedKeys(own.JWTAuthorities()))

	bundleSource := must(workloadapi.NewBundleSource(ctx))("NewBundleSource")
	b := must(bundleSource.GetBundleForTrustDomain(want.TrustDomain()))("BundleSource.GetBundleForTrustDomain")
	_ = bundleSource.Close()
	check("bundle-source", "BundleSource: %s has %d X.509 root(s) and %d JWT key(s)", want.TrustDomain(), len(b.X509Authorities()), len(b.JWTAuthorities()))

	start := time.Now()
	for i := 0; i < oneshots; i++ {
		s := must(client.FetchX509SVID(ctx))(fmt.Sprintf("one-shot FetchX509SVID #%d", i+1))
		if s.ID != want {
			fail("one-shot FetchX509SVID #%d returned %s, want %s", i+1, s.ID, want)
		}
	}
	check("x509-oneshots", "%d one-shot FetchX509SVID calls (read one message, cancel) in %s", oneshots, time.Since(start).Round(time.Millisecond))
}

type rotationWatcher struct {
	want    spiffeid.ID
	mu      sync.Mutex
	updates int
	seen    []*x509.Certificate
	changed chan struct{}
	errs    []string
	// rotatedAt is when the second distinct certificate arrived.
	rotatedAt time.Time
}

func (w *rotationWatcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.updates++
	for _, s := range c.SVIDs {
		if s.ID != w.want {
			continue
		}
		leaf := s.Certificates[0]
		if n := len(w.seen); n == 0 || w.seen[n-1].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			w.seen = append(w.seen, leaf)
			if !keyMatchesLeaf(s) {
				w.errs = append(w.errs, "rotated SVID key does not match its certificate")
			}
			if len(w.seen) == 2 {
				w.rotatedAt = time.Now()
				close(w.changed)
			}
		}
	}
}

func (w *rotationWatcher) OnX509ContextWatchError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if status.Code(err) != codes.Canceled {
		w.errs = append(w.errs, err.Error())
	}
}

// watch: WatchX509Context sees the SVID rotate before the old one expires.
func runWatch(want spiffeid.ID, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := must(workloadapi.New(ctx))("workloadapi.New")
	defer client.Close()
	w := &rotationWatcher{want: want, changed: make(chan struct{})}
	started := time.Now()
	done := make(chan error, 1)
	go func() { done <- client.WatchX509Context(ctx, w) }()
	select {
	case <-w.changed:
	case err := <-done:
		w.mu.Lock()
		fail("WatchX509Context ended before a rotation: %v (errors seen: %v)", err, w.errs)
	case <-ctx.Done():
		w.mu.Lock()
		fail("no rotation of %s within %s (%d updates, %d distinct certificates, errors: %v)", want, timeout, w.updates, len(w.seen), w.errs)
	}
	w.mu.Lock()
	errs := slices.Clone(w.errs)
	oldCert, newCert := w.seen[0], w.seen[1]
	updates, at := w.updates, w.rotatedAt
	w.mu.Unlock()
	if len(errs) > 0 {
		fail("watch errors: %v", errs)
	}
	ttl := oldCert.NotAfter.Sub(oldCert.NotBefore)
	check("watch-first", "%s serial %s, valid %s → %s (lifetime %s)", want, oldCert.SerialNumber.Text(16), oldCert.NotBefore.UTC().Format(time.TimeOnly), oldCert.NotAfter.UTC().Format(time.TimeOnly), ttl.Round(time.Second))
	if !at.Before(oldCert.NotAfter) {
		fail("the rotated SVID arrived at %s, after the old one expired at %s", at.UTC().Format(time.TimeOnly), oldCert.NotAfter.UTC().Format(time.TimeOnly))
	}
	if !newCert.NotAfter.After(oldCert.NotAfter) {
		fail("the rotated SVID (notAfter %s) does not outlive the old one (%s)", newCert.NotAfter, oldCert.NotAfter)
	}
	check("watch-rotation", "rotation observed %s after the watch started: serial %s → %s, new notAfter %s, %s before the old SVID expired (%d updates)",
		at.Sub(started).Round(100*time.Millisecond), oldCert.SerialNumber.Text(16), newCert.SerialNumber.Text(16), newCert.NotAfter.UTC().Format(time.TimeOnly), oldCert.NotAfter.Sub(at).Round(100*time.Millisecond), updates)
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		fail("WatchX509Context returned %v after cancel", err)
	}
}

// jwt: FetchJWTSVID for several audiences, ParseAndValidate against JWTSource bundles, ValidateJWTSVID.
func runJWT(want spiffeid.ID, auds []string, printToken bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	source := must(workloadapi.NewJWTSource(ctx))("NewJWTSource")
	defer source.Close()
	svid := must(source.FetchJWTSVID(ctx, jwtsvid.Params{Audience: auds[0], ExtraAudiences: auds[1:], Subject: want}))("JWTSource.FetchJWTSVID")
	if svid.ID != want {
		fail("JWT-SVID subject is %s, want %s", svid.ID, want)
	}
	for _, a := range auds {
		if !slices.Contains(svid.Audience, a) {
			fail("JWT-SVID audience %v lacks %q", svid.Audience, a)
		}
	}
	check("jwt-fetch", "JWT-SVID for %s, aud %v, expires %s (in %s)", svid.ID, svid.Audience, svid.Expiry.UTC().Format(time.RFC3339), time.Until(svid.Expiry).Round(time.Second))
	token := svid.Marshal()
	header := map[string]any{}
	if parts := strings.Split(token, "."); len(parts) != 3 {
		fail("the JWT-SVID is not a compact JWS: %d parts", len(parts))
	} else if raw, err := base64.RawURLEncoding.DecodeString(parts[0]); err != nil {
		fail("the JWT-SVID header is not base64url: %v", err)
	} else if err := json.Unmarshal(raw, &header); err != nil {
		fail("the JWT-SVID header is not JSON: %v", err)
	}
	for k := range header {
		if k != "alg" && k != "kid" && k != "typ" {
			fail("the JWT-SVID header has %q; a JWT-SVID header carries only alg, kid and typ: %v", k, header)
		}
	}
	if header["typ"] != "JWT" || header["kid"] == nil || header["kid"] == "" {
		fail("the JWT-SVID header must have typ \"JWT\" and a kid: %v", header)
	}
	check("jwt-header", "header %v, claims %v", header, sortedKeys(svid.Claims))
	if len(auds) > 1 {
		reversed := slices.Clone(auds)
		slices.Reverse(reversed)
		again := must(source.FetchJWTSVID(ctx, jwtsvid.Params{Audience: reversed[0], ExtraAudiences: reversed[1:], Subject: want}))("second FetchJWTSVID")
		if again.Marshal() != token {
			fail("a second FetchJWTSVID for the same audiences in another order minted a new token; tokens are cached by SPIFFE ID and sorted audiences")
		}
		check("jwt-cache", "FetchJWTSVID for %v returns the cached token fetched for %v", reversed, auds)
	}
	if printToken {
		fmt.Printf("TOKEN %s\n", token)
	}

	bundle := must(source.GetJWTBundleForTrustDomain(want.TrustDomain()))("JWTSource bundle")
	check("jwt-bundle", "JWTSource bundle for %s has key IDs %v", want.TrustDomain(), sortedKeys(bundle.JWTAuthorities()))

	for _, a := range auds {
		parsed := must(jwtsvid.ParseAndValidate(token, source, []string{a}))("jwtsvid.ParseAndValidate aud " + a)
		if parsed.ID != want {
			fail("ParseAndValidate gave %s, want %s", parsed.ID, want)
		}
		check("jwt-parse-validate", "jwtsvid.ParseAndValidate with JWTSource bundles accepts audience %q: sub %s, claims %v", a, parsed.ID, sortedKeys(parsed.Claims))
	}
	if _, err := jwtsvid.ParseAndValidate(token, source, []string{"not-an-audience"}); err == nil {
		fail("ParseAndValidate accepted a wrong audience")
	}

	client := must(workloadapi.New(ctx))("workloadapi.New")
	defer client.Close()
	validated := must(client.ValidateJWTSVID(ctx, token, auds[0]))("ValidateJWTSVID on the agent")
	if validated.ID != want {
		fail("ValidateJWTSVID gave %s, want %s", validated.ID, want)
	}
	check("jwt-validate-agent", "agent ValidateJWTSVID accepts the token for %q: %s", auds[0], validated.ID)
	_, err := client.ValidateJWTSVID(ctx, token, "not-an-audience")
	if status.Code(err) != codes.InvalidArgument {
		fail("ValidateJWTSVID with a wrong audience: got %v, want InvalidArgument", err)
	}
	check("jwt-validate-agent-wrong-aud", "agent ValidateJWTSVID rejects a wrong audience: %v", err)
	if _, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: auds[0], Subject: spiffeid.RequireFromPath(want.TrustDomain(), "/not/mine")}); status.Code(err) == codes.OK {
		fail("FetchJWTSVID for a SPIFFE ID the caller does not hold succeeded")
	} else {
		check("jwt-fetch-foreign-id", "FetchJWTSVID for an ID the caller does not hold is refused: %v", err)
	}
}

// federation: federated X.509 and JWT bundles reach a workload whose entry federates_with the other trust domain.
func runFederation(want spiffeid.ID, td spiffeid.TrustDomain, roots, kids []string, token, tokenID, aud, x509Only string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	source := must(workloadapi.NewX509Source(ctx))("NewX509Source")
	defer source.Close()
	svid := must(source.GetX509SVID())("GetX509SVID")
	if svid.ID != want {
		fail("default SVID is %s, want %s", svid.ID, want)
	}
	fed, err := source.GetX509BundleForTrustDomain(td)
	if err != nil {
		fail("X509Source has no bundle for the federated trust domain %s: %v", td, err)
	}
	got := []string{}
	for _, c := range fed.X509Authorities() {
		got = append(got, fingerprint(c))
	}
	sort.Strings(got)
	wantRoots := slices.Clone(roots)
	sort.Strings(wantRoots)
	if !slices.Equal(got, wantRoots) {
		fail("federated X.509 bundle for %s has roots %v, want %v", td, got, wantRoots)
	}
	check("federated-x509-bundle", "X509Source (SVID %s) has the %s bundle: %d root(s) matching the federated server's", svid.ID, td, len(got))

	client := must(workloadapi.New(ctx))("workloadapi.New")
	defer client.Close()
	bundles := must(client.FetchX509Bundles(ctx))("FetchX509Bundles")
	if !bundles.Has(td) || !bundles.Has(want.TrustDomain()) {
		fail("FetchX509Bundles lacks %s or %s", td, want.TrustDomain())
	}
	check("federated-x509-bundles", "FetchX509Bundles carries %d bundles, including %s and %s", bundles.Len(), want.TrustDomain(), td)

	// The library logs (and retries) JWT bundle responses it cannot parse, e.g. an empty JWKS.
	jwtLog := &recordingLogger{}
	jwtSource, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithLogger(jwtLog)))
	if err != nil {
		jwtLog.mu.Lock()
		fail("NewJWTSource: %v; go-spiffe logged: %v", err, jwtLog.lines)
	}
	defer jwtSource.Close()
	jb, err := jwtSource.GetJWTBundleForTrustDomain(td)
	if err != nil {
		fail("JWTSource has no JWT bundle for %s: %v", td, err)
	}
	gotKids := sortedKeys(jb.JWTAuthorities())
	wantKids := slices.Clone(kids)
	sort.Strings(wantKids)
	if !slices.Equal(gotKids, wantKids) {
		fail("federated JWT bundle for %s has key IDs %v, want %v", td, gotKids, wantKids)
	}
	check("federated-jwt-bundle", "JWTSource has the %s JWT bundle with key IDs %v", td, gotKids)

	if x509Only != "" {
		otd := must(spiffeid.TrustDomainFromString(x509Only))("-x509-only-td")
		xb := must(source.GetX509BundleForTrustDomain(otd))("X509Source bundle for " + x509Only)
		// An empty JWKS must be {"keys":[]}: empty bytes fail jwtbundle.Parse and the JWTSource above would never have become ready.
		ob := must(jwtSource.GetJWTBundleForTrustDomain(otd))("JWTSource bundle for " + x509Only)
		if !ob.Empty() {
			fail("the JWT bundle for %s has keys %v, want none", otd, sortedKeys(ob.JWTAuthorities()))
		}
		check("federated-x509-only", "%s (X.509 roots only): X509Source has %d root(s); JWTSource parsed its empty JWKS", otd, len(xb.X509Authorities()))
	}

	if token != "" {
		parsed := must(jwtsvid.ParseAndValidate(token, jwtSource, []string{aud}))("ParseAndValidate of the federated token")
		if parsed.ID.String() != tokenID {
			fail("federated token subject %s, want %s", parsed.ID, tokenID)
		}
		check("federated-jwt-parse-validate", "a JWT-SVID of %s is valid against the JWTSource's federated bundle (aud %q)", parsed.ID, aud)
		validated := must(client.ValidateJWTSVID(ctx, token, aud))("agent ValidateJWTSVID of the federated token")
		check("federated-jwt-validate-agent", "agent ValidateJWTSVID accepts the token from %s: %s", td, validated.ID)
	}
}

// mtls-server: accepts connections in order and checks each against the expected outcome.
func runMTLSServer(want, allow spiffeid.ID, expect []string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	source := must(workloadapi.NewX509Source(ctx))("NewX509Source")
	defer source.Close()
	svid := must(source.GetX509SVID())("GetX509SVID")
	if svid.ID != want {
		fail("server SVID is %s, want %s", svid.ID, want)
	}
	var refusedPeer atomic.Value
	authorizer := func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if err := tlsconfig.AuthorizeID(allow)(id, chains); err != nil {
			refusedPeer.Store(id.String())
			return err
		}
		return nil
	}
	ln := must(tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(source, source, authorizer)))("tls.Listen")
	defer ln.Close()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	check("mtls-server", "listening as %s, authorizing only %s", svid.ID, allow)
	fmt.Printf("LISTENING %s\n", ln.Addr().String())
	for i, outcome := range expect {
		refusedPeer.Store("")
		conn, err := ln.Accept()
		if err != nil {
			fail("accept #%d: %v", i+1, err)
		}
		tlsConn := conn.(*tls.Conn)
		_ = tlsConn.SetDeadline(time.Now().Add(10 * time.Second))
		err = tlsConn.Handshake()
		switch {
		case outcome == "accept" && err != nil:
			fail("connection #%d: handshake failed, want accepted: %v", i+1, err)
		case outcome == "accept":
			peer := must(spiffetls.PeerIDFromConnectionState(tlsConn.ConnectionState()))("PeerIDFromConnectionState")
			if peer != allow {
				fail("connection #%d: peer %s, want %s", i+1, peer, allow)
			}
			line := must(bufio.NewReader(tlsConn).ReadString('\n'))("read from client")
			fmt.Fprintf(tlsConn, "hello %s, I am %s\n", peer, svid.ID)
			check("mtls-accept", "connection #%d: authorized peer %s (%s), said %q", i+1, peer, tlsConn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), strings.TrimSpace(line))
		case outcome == "refuse" && err == nil:
			peer, _ := spiffetls.PeerIDFromConnectionState(tlsConn.ConnectionState())
			fail("connection #%d: peer %s was accepted, want refused", i+1, peer)
		case outcome == "refuse":
			peer, _ := refusedPeer.Load().(string)
			if peer == "" {
				fail("connection #%d failed before authorization (%v), want a refusal by ID", i+1, err)
			}
			check("mtls-refuse", "connection #%d: refused peer %s: %v", i+1, peer, err)
		default:
			fail("unknown outcome %q", outcome)
		}
		tlsConn.Close()
	}
}

// mtls-client: dials the server with its own SVID and authorizes the server's ID.
func runMTLSClient(want spiffeid.ID, addr string, serverID spiffeid.ID, expectRefused bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	source := must(workloadapi.NewX509Source(ctx))("NewX509Source")
	defer source.Close()
	svid := must(source.GetX509SVID())("GetX509SVID")
	if svid.ID != want {
		fail("client SVID is %s, want %s", svid.ID, want)
	}
	conn := must(tls.Dial("tcp", addr, tlsconfig.MTLSClientConfig(source, source, tlsconfig.AuthorizeID(serverID))))("tls.Dial (server authorization)")
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	peer := must(spiffetls.PeerIDFromConnectionState(conn.ConnectionState()))("PeerIDFromConnectionState")
	check("mtls-client-server-id", "as %s: server presented %s", svid.ID, peer)
	// With TLS 1.3 the server's verdict on the client certificate arrives with the first read.
	_, werr := fmt.Fprintf(conn, "hi from %s\n", svid.ID)
	line, rerr := bufio.NewReader(conn).ReadString('\n')
	err := errors.Join(werr, rerr)
	if expectRefused {
		if werr == nil && rerr == nil {
			fail("the server accepted %s and answered %q, want refused", svid.ID, strings.TrimSpace(line))
		}
		check("mtls-client-refused", "as %s: the server refused the connection: %v", svid.ID, err)
		return
	}
	if werr != nil || rerr != nil {
		fail("as %s: connection to %s failed: %v", svid.ID, peer, err)
	}
	check("mtls-client-accepted", "as %s: server %s answered %q", svid.ID, peer, strings.TrimSpace(line))
}

type recordingLogger struct {
	mu    sync.Mutex
	lines []string
}

func (l *recordingLogger) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}
func (l *recordingLogger) Debugf(format string, args ...any) {}
func (l *recordingLogger) Infof(format string, args ...any)  { l.add(format, args...) }
func (l *recordingLogger) Warnf(format string, args ...any)  { l.add(format, args...) }
func (l *recordingLogger) Errorf(format string, args ...any) { l.add(format, args...) }

// noidentity: the caller has no entry. One-shot calls get PermissionDenied "no identity issued";
// X509Source keeps retrying until its context ends.
func runNoIdentity(wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := must(workloadapi.New(ctx))("workloadapi.New")
	defer client.Close()
	_, err := client.FetchX509SVID(ctx)
	if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != "no identity issued" {
		fail("FetchX509SVID: got %v, want PermissionDenied \"no identity issued\"", err)
	}
	check("noidentity-x509", "FetchX509SVID: %v", err)
	_, err = client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "some-audience"})
	if status.Code(err) != codes.PermissionDenied {
		fail("FetchJWTSVID: got %v, want PermissionDenied", err)
	}
	check("noidentity-jwt", "FetchJWTSVID: %v", err)

	log := &recordingLogger{}
	srcCtx, srcCancel := context.WithTimeout(context.Background(), wait)
	defer srcCancel()
	started := time.Now()
	source, err := workloadapi.NewX509Source(srcCtx, workloadapi.WithClientOptions(workloadapi.WithLogger(log)))
	if err == nil {
		svid, _ := source.GetX509SVID()
		source.Close()
		fail("NewX509Source succeeded for a caller with no entry (SVID %v)", svid)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		fail("NewX509Source stopped early with %v, want it to keep retrying until its context ends", err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	denied := 0
	for _, l := range log.lines {
		if strings.Contains(l, "PermissionDenied") && strings.Contains(l, "no identity issued") {
			denied++
		}
		if strings.Contains(l, "Canceling watch") {
			fail("the watch was canceled (non-retryable error): %s", l)
		}
	}
	if denied < 2 {
		fail("X509Source retried %d times with \"no identity issued\" in %s, want at least 2; log: %v", denied, wait, log.lines)
	}
	check("noidentity-x509source", "NewX509Source kept retrying (%d × \"no identity issued\") until its context ended after %s: %v", denied, time.Since(started).Round(100*time.Millisecond), err)
}

// nosocket: the library's own errors for an unset address and a missing socket file.
func runNoSocket() {
	addr := os.Getenv("SPIFFE_ENDPOINT_SOCKET")
	if err := os.Unsetenv("SPIFFE_ENDPOINT_SOCKET"); err != nil {
		fail("unsetenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := workloadapi.New(ctx)
	if err == nil || !strings.Contains(err.Error(), "workload endpoint socket address is not configured") {
		fail("workloadapi.New without SPIFFE_ENDPOINT_SOCKET: got %v", err)
	}
	check("nosocket-unset", "without SPIFFE_ENDPOINT_SOCKET: %v", err)

	if addr == "" {
		fail("set SPIFFE_ENDPOINT_SOCKET to a missing socket path")
	}
	_, err = workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(addr))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no such file or directory") {
		fail("FetchX509SVID on a missing socket: got %v, want Unavailable with \"no such file or directory\"", err)
	}
	check("nosocket-missing", "FetchX509SVID on %s: %v", addr, err)
	shortCtx, shortCancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer shortCancel()
	_, err = workloadapi.NewX509Source(shortCtx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if !errors.Is(err, context.DeadlineExceeded) {
		fail("NewX509Source on a missing socket: got %v, want it to retry until its context ends", err)
	}
	check("nosocket-x509source", "NewX509Source on a missing socket retries until its context ends: %v", err)
}

type endWatcher struct {
	updates chan []string
	ended   chan error
}

func (w *endWatcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	ids := []string{}
	for _, s := range c.SVIDs {
		ids = append(ids, s.ID.String())
	}
	select {
	case w.updates <- ids:
	default:
	}
}

func (w *endWatcher) OnX509ContextWatchError(err error) {
	select {
	case w.ended <- err:
	default:
	}
}

// watch-end: holds a WatchX509Context stream open (prints READY), then reports how the stream
// ended. A stream must never end with status OK (io.EOF here): MISSION §4, "A stream never ends
// with status OK".
func runWatchEnd(want string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := must(workloadapi.New(ctx))("workloadapi.New")
	defer client.Close()
	w := &endWatcher{updates: make(chan []string, 16), ended: make(chan error, 16)}
	go func() { _ = client.WatchX509Context(ctx, w) }()
	select {
	case ids := <-w.updates:
		fmt.Printf("READY %v\n", ids)
	case err := <-w.ended:
		fail("the watch failed before its first update: %v", err)
	case <-ctx.Done():
		fail("no first update within %s", timeout)
	}
	for {
		select {
		case <-w.updates:
			continue
		case err := <-w.ended:
			if errors.Is(err, io.EOF) {
				fail("the FetchX509SVID stream ended with status OK (go-spiffe sees io.EOF); a stream must end with an error status such as %s, never OK", want)
			}
			code := status.Code(err)
			if want != "" && code.String() != want {
				fail("the FetchX509SVID stream ended with %v, want %s", err, want)
			}
			check("stream-end", "the FetchX509SVID stream ended with %s: %v", code, err)
			return
		case <-ctx.Done():
			fail("the stream did not end within %s", timeout)
		}
	}
}

// noheader: calls without the security header (or with a bad one) are refused with
// InvalidArgument, and go-spiffe stops watching on InvalidArgument.
func runNoHeader() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	variants := []struct {
		name    string
		rewrite func(context.Context) context.Context
	}{
		{"no header", func(ctx context.Context) context.Context { return metadata.NewOutgoingContext(ctx, metadata.MD{}) }},
		{"value \"false\"", func(ctx context.Context) context.Context {
			return metadata.NewOutgoingContext(ctx, metadata.Pairs("workload.spiffe.io", "false"))
		}},
		{"two values", func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
		}},
	}
	for _, v := range variants {
		stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(v.rewrite(ctx), desc, cc, method, opts...)
		}
		unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(v.rewrite(ctx), method, req, reply, cc, opts...)
		}
		opt := workloadapi.WithDialOptions(grpc.WithStreamInterceptor(stream), grpc.WithUnaryInterceptor(unary))
		client := must(workloadapi.New(ctx, opt))("workloadapi.New")
		_, err := client.FetchX509SVID(ctx)
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "security header missing from request" {
			fail("%s: FetchX509SVID got %v, want InvalidArgument \"security header missing from request\"", v.name, err)
		}
		_, jerr := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"})
		if status.Code(jerr) != codes.InvalidArgument {
			fail("%s: FetchJWTSVID got %v, want InvalidArgument", v.name, jerr)
		}
		_, berr := client.FetchJWTBundles(ctx)
		if status.Code(berr) != codes.InvalidArgument {
			fail("%s: FetchJWTBundles got %v, want InvalidArgument", v.name, berr)
		}
		check("noheader", "%s: FetchX509SVID, FetchJWTSVID and FetchJWTBundles refused: %v", v.name, err)
		client.Close()
	}
	// go-spiffe stops a watch on InvalidArgument: the source fails at once instead of retrying.
	strip := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(metadata.NewOutgoingContext(ctx, metadata.MD{}), desc, cc, method, opts...)
	}
	started := time.Now()
	_, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithDialOptions(grpc.WithStreamInterceptor(strip))))
	if status.Code(err) != codes.InvalidArgument {
		fail("NewX509Source without the header: got %v, want InvalidArgument at once", err)
	}
	check("noheader-x509source", "NewX509Source without the header fails in %s: %v", time.Since(started).Round(time.Millisecond), err)
}

// authority: the agent must serve calls whatever :authority the client sends on the Unix socket.
// grpc-java (java-spiffe) sends the socket path itself, e.g. "/run/spire/agent.sock"; gRPC
// C-core (py-spiffe) sends "localhost" or the %-encoded path; grpc-go sends "localhost".
func runAuthority(want spiffeid.ID, value string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := must(workloadapi.New(ctx, workloadapi.WithDialOptions(grpc.WithAuthority(value))))("workloadapi.New")
	defer client.Close()
	svid, err := client.FetchX509SVID(ctx)
	if err != nil {
		fail("FetchX509SVID with :authority %q: %v", value, err)
	}
	if svid.ID != want {
		fail("FetchX509SVID with :authority %q returned %s, want %s", value, svid.ID, want)
	}
	check("authority", "FetchX509SVID with :authority %q: %s", value, svid.ID)
}
