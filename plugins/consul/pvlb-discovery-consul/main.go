// Command pvlb-discovery-consul is the Consul provider as its own plugin
// executable; pvlb bundles the same provider.
package main

import (
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/consul"
)

func main() { pluginapi.Serve(&consul.Provider{}) }
