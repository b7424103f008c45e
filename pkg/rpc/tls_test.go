package rpc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/peervault/pvlb/internal/testtools"
	"github.com/peervault/pvlb/pkg/demoserver"
	"github.com/peervault/pvlb/pkg/lb"
	"github.com/peervault/pvlb/pkg/rpc"
	"github.com/peervault/pvlb/pkg/tlsfiles"
	pb "github.com/peervault/pvlb/proto/peervault/v1"
)

// testPKI is a throwaway CA with a server and a client certificate, written
// as PEM files the way an operator would configure them.
type testPKI struct {
	dir        string
	caPool     *x509.CertPool
	serverCert tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pvlb test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &testPKI{dir: dir, caPool: x509.NewCertPool()}
	p.caPool.AddCert(caCert)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)

	issue := func(name string, usage x509.ExtKeyUsage, serial int64) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", keyDER)
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	p.serverCert = issue("peervault.test", x509.ExtKeyUsageServerAuth, 2)
	issue("client", x509.ExtKeyUsageClientAuth, 3)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *testPKI) file(name string) string { return filepath.Join(p.dir, name) }

// call makes one call over a fresh client with the given TLS settings.
func callWithTLS(t *testing.T, addr string, tlsCfg *tlsfiles.Config) error {
	t.Helper()
	balancer, _ := lb.NewLoadBalancer(nil, nil)
	host, port := testtools.HostPort(addr)
	_ = balancer.AddServer("secure", host, port, 1)
	cfg := rpc.DefaultLoadBalancedClientConfig()
	cfg.TLS = tlsCfg
	cfg.MaxRetries = 0
	client, err := rpc.NewLoadBalancedClient(balancer, cfg, nil)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pb.NewPeerVaultServiceClient(client).HealthCheck(ctx, &pb.HealthCheckRequest{})
	return err
}

func TestMutualTLSToBackends(t *testing.T) {
	pki := newTestPKI(t)
	srv, err := demoserver.Start("127.0.0.1:0", demoserver.Config{Name: "secure"}, nil, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.serverCert},
		ClientCAs:    pki.caPool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	mtls := &tlsfiles.Config{CAFile: pki.file("ca.pem"), CertFile: pki.file("client.pem"), KeyFile: pki.file("client-key.pem"), ServerName: "peervault.test"}
	if err := callWithTLS(t, srv.Addr(), mtls); err != nil {
		t.Fatalf("mutual TLS call failed: %v", err)
	}
	// Without a client certificate the server refuses the handshake.
	if err := callWithTLS(t, srv.Addr(), &tlsfiles.Config{CAFile: pki.file("ca.pem"), ServerName: "peervault.test"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("without a client certificate: %v, want UNAVAILABLE", err)
	}
	// A server name that its certificate does not carry fails verification.
	if err := callWithTLS(t, srv.Addr(), &tlsfiles.Config{CAFile: pki.file("ca.pem"), CertFile: pki.file("client.pem"), KeyFile: pki.file("client-key.pem"), ServerName: "other.test"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("wrong server name: %v, want UNAVAILABLE", err)
	}
	// Plaintext to a TLS server fails too.
	if err := callWithTLS(t, srv.Addr(), nil); err == nil {
		t.Fatal("a plaintext call to a TLS server succeeded")
	}
}

func TestTLSConfigErrorsNameTheFile(t *testing.T) {
	pki := newTestPKI(t)
	cases := map[string]tlsfiles.Config{
		"ca_file":            {CAFile: pki.file("missing.pem")},
		"holds no PEM":       {CAFile: pki.file("client-key.pem")},
		"go together":        {CertFile: pki.file("client.pem")},
		"cert_file: loading": {CertFile: pki.file("client.pem"), KeyFile: pki.file("ca.pem")},
	}
	for want, cfg := range cases {
		_, err := cfg.Load()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want an error with %q", cfg, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("error quotes file contents: %v", err)
		}
	}
}
