// Command pvlb-discovery-etcd is the etcd provider as its own plugin
// executable. pvlb bundles the same provider; an executable on the plugin
// path takes precedence, e.g. to run a newer provider with an older pvlb.
package main

import (
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/etcd"
)

func main() { pluginapi.Serve(&etcd.Provider{}) }
