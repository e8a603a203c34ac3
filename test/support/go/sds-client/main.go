// Command sds-client speaks Envoy's Secret Discovery Service (v3) to an agent socket, as Envoy
// does, using go-control-plane's generated protos, and does mTLS with the secrets it got.
//
// It is driven by the tests: one JSON command per line on stdin, one JSON event per line on
// stdout. Commands:
//
//	{"op":"send","names":[…],"version":"","nonce":"","error":"","node":{…}}  a StreamSecrets request
//	{"op":"ack"}                 version and nonce of the last response, names of the last request
//	{"op":"nack","error":"…"}    nonce of the last response, the last ACKed version, error_detail set
//	{"op":"recv","timeout_ms":N} the next response (or the stream's end)
//	{"op":"close"}               CloseSend, then the stream's final status
//	{"op":"fetch","names":[…]}   FetchSecrets
//	{"op":"delta"}               DeltaSecrets: one request, then the stream's status
//	{"op":"serve","cert":"…","validation":"…"}  TLS server with those secrets (one connection)
//	{"op":"dial","addr":"…","cert":"…","validation":"…"}  TLS client with those secrets
//	{"op":"served"}              waits for the served connection's outcome
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

const secretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

type nodeSpec struct {
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata"`
	// Build version [major, minor, patch] sent as user_agent_build_version.
	BuildVersion []uint32 `json:"build_version"`
}

type command struct {
	Op         string    `json:"op"`
	Names      []string  `json:"names"`
	Version    string    `json:"version"`
	Nonce      string    `json:"nonce"`
	Error      string    `json:"error"`
	Node       *nodeSpec `json:"node"`
	TimeoutMs  int       `json:"timeout_ms"`
	Cert       string    `json:"cert"`
	Validation string    `json:"validation"`
	Addr       string    `json:"addr"`
}

type event map[string]any

var out = json.NewEncoder(os.Stdout)

func emit(e event) {
	if err := out.Encode(e); err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		os.Exit(2)
	}
}

func statusEvent(kind string, err error) event {
	st := grpcstatus.Convert(err)
	return event{"event": kind, "code": int(st.Code()), "message": st.Message()}
}

type received struct {
	resp *discoveryv3.DiscoveryResponse
	err  error
}

// client holds the stream and what an Envoy remembers of it.
type client struct {
	conn        *grpc.ClientConn
	sds         secretv3.SecretDiscoveryServiceClient
	stream      secretv3.SecretDiscoveryService_StreamSecretsClient
	cancel      context.CancelFunc
	responses   chan received
	node        *corev3.Node
	lastNames   []string
	lastVersion string // of the last response
	lastNonce   string
	ackedVer    string
	// Secrets received, by name (the latest wins).
	certs       map[string]*tlsv3.TlsCertificate
	validations map[string]*tlsv3.CertificateValidationContext
	served      chan event
}

func buildNode(spec *nodeSpec) (*corev3.Node, error) {
	if spec == nil {
		return nil, nil
	}
	n := &corev3.Node{Id: spec.ID, Cluster: "sds-client", UserAgentName: "envoy"}
	if spec.Metadata != nil {
		md, err := structpb.NewStruct(spec.Metadata)
		if err != nil {
			return nil, err
		}
		n.Metadata = md
	}
	if len(spec.BuildVersion) == 3 {
		n.UserAgentVersionType = &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: spec.BuildVersion[0], MinorNumber: spec.BuildVersion[1], Patch: spec.BuildVersion[2]},
		}}
	}
	return n, nil
}

func (c *client) open() error {
	if c.stream != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.sds.StreamSecrets(ctx)
	if err != nil {
		cancel()
		return err
	}
	c.stream, c.cancel = stream, cancel
	c.responses = make(chan received, 16)
	go func() {
		for {
			resp, err := stream.Recv()
			c.responses <- received{resp, err}
			if err != nil {
				return
			}
		}
	}()
	return nil
}

func (c *client) send(names []string, version, nonce, detail string, node *corev3.Node) error {
	if err := c.open(); err != nil {
		return err
	}
	req := &discoveryv3.DiscoveryRequest{VersionInfo: version, Node: node, ResourceNames: names, TypeUrl: secretTypeURL, ResponseNonce: nonce}
	if detail != "" {
		req.ErrorDetail = &status.Status{Code: 3, Message: detail}
	}
	c.lastNames = names
	return c.stream.Send(req)
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func parsePEMCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	if len(strings.TrimSpace(string(data))) != 0 {
		return nil, errors.New("trailing data after PEM blocks")
	}
	return certs, nil
}

func fingerprints(certs []*x509.Certificate) []string {
	out := []string{}
	for _, c := range certs {
		out = append(out, fingerprint(c.Raw))
	}
	return out
}

// describe summarises one secret and remembers it.
func (c *client) describe(secret *tlsv3.Secret) (event, error) {
	e := event{"name": secret.GetName()}
	switch t := secret.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		chainPEM := t.TlsCertificate.GetCertificateChain().GetInlineBytes()
		keyPEM := t.TlsCertificate.GetPrivateKey().GetInlineBytes()
		certs, err := parsePEMCerts(chainPEM)
		if err != nil || len(certs) == 0 {
			return nil, fmt.Errorf("secret %q: certificate chain: %v", secret.GetName(), err)
		}
		if _, err := tls.X509KeyPair(chainPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("secret %q: key does not match the chain: %v", secret.GetName(), err)
		}
		keyBlock, _ := pem.Decode(keyPEM)
		ids := []string{}
		for _, u := range certs[0].URIs {
			ids = append(ids, u.String())
		}
		e["kind"] = "tls_certificate"
		e["spiffe_ids"] = ids
		e["serial"] = certs[0].SerialNumber.String()
		e["chain"] = len(certs)
		e["key_type"] = keyBlock.Type
		c.certs[secret.GetName()] = t.TlsCertificate
	case *tlsv3.Secret_ValidationContext:
		vc := t.ValidationContext
		if ca := vc.GetTrustedCa(); ca != nil {
			certs, err := parsePEMCerts(ca.GetInlineBytes())
			if err != nil {
				return nil, fmt.Errorf("secret %q: trusted_ca: %v", secret.GetName(), err)
			}
			e["kind"] = "trusted_ca"
			e["roots"] = fingerprints(certs)
		} else if custom := vc.GetCustomValidatorConfig(); custom != nil {
			var cfg tlsv3.SPIFFECertValidatorConfig
			if err := custom.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return nil, fmt.Errorf("secret %q: typed_config: %v", secret.GetName(), err)
			}
			if err := cfg.ValidateAll(); err != nil {
				return nil, fmt.Errorf("secret %q: SPIFFE validator config is invalid: %v", secret.GetName(), err)
			}
			domains := []event{}
			for _, td := range cfg.GetTrustDomains() {
				certs, err := parsePEMCerts(td.GetTrustBundle().GetInlineBytes())
				if err != nil {
					return nil, fmt.Errorf("secret %q: bundle of %s: %v", secret.GetName(), td.GetName(), err)
				}
				domains = append(domains, event{"name": td.GetName(), "roots": fingerprints(certs)})
			}
			e["kind"] = "spiffe_validator"
			e["validator"] = custom.GetName()
			e["trust_domains"] = domains
		} else {
			return nil, fmt.Errorf("secret %q: empty validation context", secret.GetName())
		}
		c.validations[secret.GetName()] = vc
	default:
		return nil, fmt.Errorf("secret %q: unexpected type %T", secret.GetName(), t)
	}
	return e, nil
}

func (c *client) responseEvent(kind string, resp *discoveryv3.DiscoveryResponse) event {
	resources := []event{}
	for _, any := range resp.GetResources() {
		if any.GetTypeUrl() != secretTypeURL {
			return event{"event": "invalid", "message": "resource type " + any.GetTypeUrl()}
		}
		var secret tlsv3.Secret
		if err := any.UnmarshalTo(&secret); err != nil {
			return event{"event": "invalid", "message": err.Error()}
		}
		if err := secret.ValidateAll(); err != nil {
			return event{"event": "invalid", "message": err.Error()}
		}
		d, err := c.describe(&secret)
		if err != nil {
			return event{"event": "invalid", "message": err.Error()}
		}
		resources = append(resources, d)
	}
	return event{"event": kind, "version": resp.GetVersionInfo(), "nonce": resp.GetNonce(), "type_url": resp.GetTypeUrl(), "resources": resources}
}

func (c *client) recv(timeout time.Duration) event {
	if c.responses == nil {
		return event{"event": "invalid", "message": "no stream"}
	}
	select {
	case r := <-c.responses:
		if r.err != nil {
			if errors.Is(r.err, io.EOF) {
				return event{"event": "end", "code": 0, "message": ""}
			}
			return statusEvent("end", r.err)
		}
		c.lastVersion, c.lastNonce = r.resp.GetVersionInfo(), r.resp.GetNonce()
		return c.responseEvent("response", r.resp)
	case <-time.After(timeout):
		return event{"event": "timeout"}
	}
}

// verifier checks a peer's chain against the bundle of its SPIFFE ID's trust domain, as
// Envoy's SPIFFE validator does, or against plain roots for a trusted_ca context.
func verifier(vc *tlsv3.CertificateValidationContext, peer *string) (func([][]byte, [][]*x509.Certificate) error, error) {
	pools := map[string]*x509.CertPool{}
	var anyTD *x509.CertPool
	if ca := vc.GetTrustedCa(); ca != nil {
		anyTD = x509.NewCertPool()
		if !anyTD.AppendCertsFromPEM(ca.GetInlineBytes()) {
			return nil, errors.New("trusted_ca holds no certificate")
		}
	} else {
		var cfg tlsv3.SPIFFECertValidatorConfig
		if err := vc.GetCustomValidatorConfig().GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			return nil, err
		}
		for _, td := range cfg.GetTrustDomains() {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(td.GetTrustBundle().GetInlineBytes())
			pools[td.GetName()] = pool
		}
	}
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("no peer certificate")
		}
		certs := make([]*x509.Certificate, 0, len(raw))
		for _, der := range raw {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return err
			}
			certs = append(certs, cert)
		}
		leaf := certs[0]
		if len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "spiffe" {
			return errors.New("peer certificate has no single SPIFFE ID")
		}
		pool := anyTD
		if pool == nil {
			pool = pools[leaf.URIs[0].Host]
		}
		if pool == nil {
			return fmt.Errorf("no bundle for trust domain %q", leaf.URIs[0].Host)
		}
		intermediates := x509.NewCertPool()
		for _, c := range certs[1:] {
			intermediates.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		*peer = leaf.URIs[0].String()
		return nil
	}, nil
}

func (c *client) tlsConfig(cmd command, peer *string) (*tls.Config, error) {
	cert, ok := c.certs[cmd.Cert]
	if !ok {
		return nil, fmt.Errorf("no TLS certificate %q received", cmd.Cert)
	}
	vc, ok := c.validations[cmd.Validation]
	if !ok {
		return nil, fmt.Errorf("no validation context %q received", cmd.Validation)
	}
	pair, err := tls.X509KeyPair(cert.GetCertificateChain().GetInlineBytes(), cert.GetPrivateKey().GetInlineBytes())
	if err != nil {
		return nil, err
	}
	verify, err := verifier(vc, peer)
	if err != nil {
		return nil, err
	}
	// Peer verification is the SPIFFE validator above (no host names in SPIFFE).
	return &tls.Config{
		Certificates:          []tls.Certificate{pair},
		InsecureSkipVerify:    true,
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verify,
		MinVersion:            tls.VersionTLS12,
	}, nil
}

func (c *client) serve(cmd command) event {
	var peer string
	cfg, err := c.tlsConfig(cmd, &peer)
	if err != nil {
		return event{"event": "invalid", "message": err.Error()}
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return event{"event": "invalid", "message": err.Error()}
	}
	c.served = make(chan event, 1)
	go func() {
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			c.served <- event{"event": "served", "error": err.Error()}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			c.served <- event{"event": "served", "error": err.Error()}
			return
		}
		_, err = fmt.Fprintf(conn, "hello %s\n", peer)
		e := event{"event": "served", "peer": peer, "got": strings.TrimSpace(line)}
		if err != nil {
			e["error"] = err.Error()
		}
		c.served <- e
	}()
	return event{"event": "listening", "addr": ln.Addr().String()}
}

func (c *client) dial(cmd command) event {
	var peer string
	cfg, err := c.tlsConfig(cmd, &peer)
	if err != nil {
		return event{"event": "invalid", "message": err.Error()}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", cmd.Addr, cfg)
	if err != nil {
		return event{"event": "dialed", "error": err.Error()}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(conn, "ping\n"); err != nil {
		return event{"event": "dialed", "error": err.Error()}
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return event{"event": "dialed", "peer": peer, "error": err.Error()}
	}
	return event{"event": "dialed", "peer": peer, "reply": strings.TrimSpace(line), "tls_version": tls.VersionName(conn.ConnectionState().Version)}
}

func (c *client) run(cmd command) event {
	timeout := 30 * time.Second
	if cmd.TimeoutMs > 0 {
		timeout = time.Duration(cmd.TimeoutMs) * time.Millisecond
	}
	switch cmd.Op {
	case "send":
		node, err := buildNode(cmd.Node)
		if err != nil {
			return event{"event": "invalid", "message": err.Error()}
		}
		if err := c.send(cmd.Names, cmd.Version, cmd.Nonce, cmd.Error, node); err != nil {
			return statusEvent("send-failed", err)
		}
		return event{"event": "sent"}
	case "ack":
		c.ackedVer = c.lastVersion
		if err := c.send(c.lastNames, c.lastVersion, c.lastNonce, "", nil); err != nil {
			return statusEvent("send-failed", err)
		}
		return event{"event": "sent", "version": c.lastVersion, "nonce": c.lastNonce}
	case "nack":
		if err := c.send(c.lastNames, c.ackedVer, c.lastNonce, cmd.Error, nil); err != nil {
			return statusEvent("send-failed", err)
		}
		return event{"event": "sent", "version": c.ackedVer, "nonce": c.lastNonce}
	case "recv":
		return c.recv(timeout)
	case "close":
		if c.stream == nil {
			return event{"event": "invalid", "message": "no stream"}
		}
		if err := c.stream.CloseSend(); err != nil {
			return statusEvent("send-failed", err)
		}
		for {
			e := c.recv(timeout)
			if e["event"] != "response" {
				return e
			}
		}
	case "fetch":
		node, err := buildNode(cmd.Node)
		if err != nil {
			return event{"event": "invalid", "message": err.Error()}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		resp, err := c.sds.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{Node: node, ResourceNames: cmd.Names, TypeUrl: secretTypeURL})
		if err != nil {
			return statusEvent("error", err)
		}
		return c.responseEvent("fetched", resp)
	case "delta":
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		stream, err := c.sds.DeltaSecrets(ctx)
		if err != nil {
			return statusEvent("end", err)
		}
		_ = stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: secretTypeURL, ResourceNamesSubscribe: cmd.Names})
		_, err = stream.Recv()
		return statusEvent("end", err)
	case "serve":
		return c.serve(cmd)
	case "dial":
		return c.dial(cmd)
	case "served":
		select {
		case e := <-c.served:
			return e
		case <-time.After(timeout):
			return event{"event": "timeout"}
		}
	}
	return event{"event": "invalid", "message": "unknown op " + cmd.Op}
}

func main() {
	socket := flag.String("socket", "", "the agent's Workload API socket")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: sds-client -socket PATH")
		os.Exit(2)
	}
	// As Envoy: plain HTTP/2 on the Unix socket, no workload.spiffe.io header.
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(2)
	}
	c := &client{conn: conn, sds: secretv3.NewSecretDiscoveryServiceClient(conn), certs: map[string]*tlsv3.TlsCertificate{}, validations: map[string]*tlsv3.CertificateValidationContext{}}
	emit(event{"event": "ready", "pid": os.Getpid()})
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		var cmd command
		if err := json.Unmarshal(scanner.Bytes(), &cmd); err != nil {
			emit(event{"event": "invalid", "message": err.Error()})
			continue
		}
		emit(c.run(cmd))
	}
	if c.cancel != nil {
		c.cancel()
	}
	_ = conn.Close()
}
