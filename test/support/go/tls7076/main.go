// Command tls7076 is a gRPC-over-TLS server that reproduces spiffe/spire#7076 for tests.
//
// spire-server 1.15.0–1.15.1 (built with Go >= 1.26) sets SessionTicketsDisabled on the
// listener's outer tls.Config, but the per-client config returned by GetConfigForClient does
// not set it. Go >= 1.26 takes the ticket keys from the outer config (none, since tickets are
// disabled there) and the decision to send a ticket from the per-client one (enabled), so a
// TLS 1.3 client that offers psk_dhe_ke (every OpenSSL client) has its handshake aborted with
// "tls: internal error: session ticket keys unavailable". This server copies that listener
// configuration, and SPIRE's client-certificate policy: RequestClientCert with a
// VerifyPeerCertificate hook that skips verification only when rawCerts is nil.
//
// It makes its own CA, server SVID (spiffe://<td>/spire/server) and agent SVID (valid for
// -agent-ttl, from an hour ago), writes them
// as PEM into -out (ca.pem, agent.pem, agent-key.pem), prints "listening <addr>" on stdout, and logs each ClientHello, each
// handshake failure and each request on stderr. Every RPC gets an empty response, except
// Bundle/GetBundle (the CA) and Agent/AttestAgent (an agent SVID for the request's CSR).
//
// SIGUSR1 "upgrades" it to the fixed release (1.15.2): the per-client config disables
// session tickets too, so TLS 1.3 clients complete again; it logs "upgraded".
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

const extensionPSKModes = 45

func main() {
	td := flag.String("td", "example.org", "trust domain")
	out := flag.String("out", "", "directory for ca.pem, agent.pem, agent-key.pem")
	agentTTL := flag.Duration("agent-ttl", 24*time.Hour, "how long agent SVIDs stay valid (they start an hour in the past)")
	flag.Parse()
	if *out == "" {
		log.Fatal("tls7076: -out is required")
	}
	logger := log.New(os.Stderr, "", 0)

	caKey, caCert := mustCA()
	serverKey := mustKey()
	serverDER := mustLeaf(caKey, caCert, &serverKey.PublicKey, "spiffe://"+*td+"/spire/server", x509.ExtKeyUsageServerAuth, 24*time.Hour)
	agentID := "spiffe://" + *td + "/spire/agent/join_token/tls7076"
	agentKey := mustKey()
	agentDER := mustLeaf(caKey, caCert, &agentKey.PublicKey, agentID, x509.ExtKeyUsageClientAuth, *agentTTL)
	mustWrite(filepath.Join(*out, "ca.pem"), pemBlock("CERTIFICATE", caCert.Raw))
	mustWrite(filepath.Join(*out, "agent.pem"), pemBlock("CERTIFICATE", agentDER))
	mustWrite(filepath.Join(*out, "agent-key.pem"), pemBlock("PRIVATE KEY", mustPKCS8(agentKey)))

	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	serving := tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}

	var upgraded atomic.Bool
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			upgraded.Store(true)
			logger.Printf("upgraded")
		}
	}()

	perClient := func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		logger.Printf("clienthello versions=%s psk_key_exchange_modes=%t", versionNames(hello.SupportedVersions), slices.Contains(hello.Extensions, extensionPSKModes))
		// As spire-server's getTLSConfig: session tickets are NOT disabled here (until upgraded).
		return &tls.Config{
			SessionTicketsDisabled: upgraded.Load(),
			Certificates:           []tls.Certificate{serving},
			ClientAuth:             tls.RequestClientCert,
			MinVersion:             tls.VersionTLS12,
			NextProtos:             []string{"h2"},
			VerifyPeerCertificate:  spireVerify(roots, *td),
		}, nil
	}
	outer := &tls.Config{
		GetConfigForClient: perClient,
		// As spire-server 1.15.0–1.15.1's createTCPServer (spiffe/spire#6715).
		SessionTicketsDisabled: true,
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			serveRPC(w, r, logger, *td, caCert.Raw, func(csr []byte) ([]byte, error) {
				req, err := x509.ParseCertificateRequest(csr)
				if err != nil {
					return nil, err
				}
				return mustLeaf(caKey, caCert, req.PublicKey, agentID, x509.ExtKeyUsageClientAuth, *agentTTL), nil
			})
		}),
		ErrorLog: logger,
		// No TLSConfig here: the listener does TLS, and with none net/http serves HTTP/2 to
		// connections that negotiated h2.
	}
	fmt.Printf("listening %s\n", ln.Addr())
	log.Fatal(srv.Serve(tls.NewListener(ln, outer)))
}

// spireVerify checks client certificates as spire-server does: nothing when rawCerts is nil
// (TLS 1.3 with an empty Certificate message), otherwise a chain to the bundle and a leaf
// with a SPIFFE ID in the trust domain. Under TLS 1.2 an empty Certificate message arrives
// as a non-nil empty slice, so it fails here and the client gets alert 42 (bad_certificate).
func spireVerify(roots *x509.CertPool, td string) func([][]byte, [][]*x509.Certificate) error {
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if rawCerts == nil {
			return nil
		}
		if len(rawCerts) == 0 {
			return errors.New("x509svid: empty certificates chain")
		}
		leaf, err := x509.ParseCertificate(rawCerts[0])
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, raw := range rawCerts[1:] {
			c, err := x509.ParseCertificate(raw)
			if err != nil {
				return err
			}
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "spiffe" || leaf.URIs[0].Host != td {
			return errors.New("unexpected trust domain")
		}
		return nil
	}
}

// serveRPC answers one gRPC call after reading its first request message, and logs the
// method, the TLS version and the client's SPIFFE ID ("none" without a certificate).
// Bundle/GetBundle returns the CA, Agent/AttestAgent an SVID, everything else an empty message.
func serveRPC(w http.ResponseWriter, r *http.Request, logger *log.Logger, td string, caDER []byte, signAgent func(csr []byte) ([]byte, error)) {
	peer := "none"
	if len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) == 1 {
		peer = r.TLS.PeerCertificates[0].URIs[0].String()
	}
	logger.Printf("rpc %s version=%s peer=%s", r.URL.Path, tls.VersionName(r.TLS.Version), peer)
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Trailer", "Grpc-Status")
	var hdr [5]byte
	if _, err := io.ReadFull(r.Body, hdr[:]); err != nil {
		w.WriteHeader(http.StatusOK)
		w.Header().Set("Grpc-Status", "13")
		return
	}
	msg := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r.Body, msg); err != nil {
		w.WriteHeader(http.StatusOK)
		w.Header().Set("Grpc-Status", "13")
		return
	}
	var body []byte
	switch r.URL.Path {
	case "/spire.api.server.agent.v1.Agent/AttestAgent":
		// AttestAgentRequest{params(1){params(2): AgentX509SVIDParams{csr(1)}}}
		der, err := signAgent(get(get(get(msg, 1), 2), 1))
		if err != nil {
			logger.Printf("attest: %v", err)
			w.WriteHeader(http.StatusOK)
			w.Header().Set("Grpc-Status", "3")
			return
		}
		body = attestResult(td, der)
	case "/spire.api.server.bundle.v1.Bundle/GetBundle":
		// Bundle{trust_domain(1), x509_authorities(2): X509Certificate{asn1(1)}}
		body = append(field(1, []byte(td)), field(2, field(1, caDER))...)
	}
	frame := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(body)))
	_, _ = w.Write(append(frame, body...))
	w.Header().Set("Grpc-Status", "0")
}

// attestResult encodes AttestAgentResponse{result{svid{cert_chain, id{td, path}, expires_at}}}.
func attestResult(td string, der []byte) []byte {
	id := append(field(1, []byte(td)), field(2, []byte("/spire/agent/join_token/tls7076"))...)
	svid := append(field(1, der), field(2, id)...)
	svid = append(svid, 0x18) // expires_at (3), varint
	svid = binary.AppendUvarint(svid, uint64(time.Now().Add(time.Hour).Unix()))
	return field(1, field(1, svid))
}

// get returns the first length-delimited field `num` of a protobuf message (nil if absent).
func get(msg []byte, num int) []byte {
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return nil
		}
		msg = msg[n:]
		switch key & 7 {
		case 0:
			_, n = binary.Uvarint(msg)
			if n <= 0 {
				return nil
			}
			msg = msg[n:]
		case 2:
			size, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < size {
				return nil
			}
			if int(key>>3) == num {
				return msg[n : n+int(size)]
			}
			msg = msg[n+int(size):]
		default:
			return nil
		}
	}
	return nil
}

func field(num int, data []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(num<<3|2))
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

func versionNames(vs []uint16) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = tls.VersionName(v)
	}
	return fmt.Sprint(names)
}

func mustCA() (*ecdsa.PrivateKey, *x509.Certificate) {
	key := mustKey()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"tls7076"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	return key, cert
}

func mustLeaf(caKey *ecdsa.PrivateKey, ca *x509.Certificate, pub any, id string, usage x509.ExtKeyUsage, ttl time.Duration) []byte {
	u, err := url.Parse(id)
	if err != nil {
		log.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"SPIRE"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(ttl),
		URIs:                  []*url.URL{u},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		log.Fatal(err)
	}
	return der
}

func mustKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	return key
}

func mustPKCS8(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	return der
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func mustWrite(path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		log.Fatal(err)
	}
}
