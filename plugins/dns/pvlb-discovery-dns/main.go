// Command pvlb-discovery-dns is the DNS provider as its own plugin
// executable. pvlb bundles the same provider; an executable on the plugin
// path takes precedence.
package main

import (
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/dns"
)

func main() { pluginapi.Serve(&dns.Provider{}) }
