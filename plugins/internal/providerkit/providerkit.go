// Package providerkit holds what the bundled discovery providers share:
// reading optional settings and the common tls block.
package providerkit

import (
	"errors"

	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/pkg/tlsfiles"
)

// String is an optional string setting's value, "" when unset.
func String(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// TLS is the decoded tls block.
type TLS struct {
	CAFile             *string `json:"ca_file"`
	CertFile           *string `json:"cert_file"`
	KeyFile            *string `json:"key_file"`
	ServerName         *string `json:"server_name"`
	InsecureSkipVerify *bool   `json:"insecure_skip_verify"`
}

// TLSBlock is the schema of a tls block: ca_file, cert_file, key_file and
// server_name, plus the provider's own extra attributes.
func TLSBlock(description string, extra ...pluginapi.Attribute) pluginapi.Block {
	attrs := []pluginapi.Attribute{
		{Name: "ca_file", Type: pluginapi.String, Description: "PEM file of the CA(s) to trust"},
		{Name: "cert_file", Type: pluginapi.String, Description: "client certificate, for mutual TLS"},
		{Name: "key_file", Type: pluginapi.String, Description: "client key, with cert_file"},
		{Name: "server_name", Type: pluginapi.String, Description: "name to verify in the server's certificate"},
	}
	return pluginapi.Block{Name: "tls", Description: description, Schema: pluginapi.Schema{Attributes: append(attrs, extra...)}}
}

// TLSProblem names the tls block's setting a tlsfiles error is about, as
// a pluginapi.Problem: "tls.ca_file" or "tls.cert_file", else the block.
func TLSProblem(err error) error {
	var fe *tlsfiles.FileError
	if errors.As(err, &fe) {
		return pluginapi.Invalid("tls."+fe.Attr, "%v", fe.Err)
	}
	return pluginapi.Invalid("tls", "%v", err)
}
