// Package tlsfiles loads TLS settings given as file names (a CA, a client
// certificate and key) into a tls.Config. The configuration, the gRPC layer
// and the discovery providers share it without importing one another.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Config names the files for TLS to backends. With only CAFile it is
// TLS with a private CA; with CertFile and KeyFile too, mutual TLS.
type Config struct {
	CAFile     string `json:"ca_file,omitempty"`
	CertFile   string `json:"cert_file,omitempty"`
	KeyFile    string `json:"key_file,omitempty"`
	ServerName string `json:"server_name,omitempty"` // overrides the name checked in the server's certificate
}

// Load reads the files into a tls.Config. Errors name the file, never its
// contents.
func (c *Config) Load() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, &FileError{Attr: "ca_file", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FileError{Attr: "ca_file", Err: fmt.Errorf("%s holds no PEM certificate", c.CAFile)}
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tls: cert_file and key_file go together: set both for mutual TLS, or neither")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, &FileError{Attr: "cert_file", Err: fmt.Errorf("loading %s with key_file %s: %w", c.CertFile, c.KeyFile, err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// FileError is a TLS file that cannot be used; Attr names its setting.
type FileError struct {
	Attr string // ca_file or cert_file
	Err  error
}

func (e *FileError) Error() string { return "tls: " + e.Attr + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }
