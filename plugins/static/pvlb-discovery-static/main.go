// Command pvlb-discovery-static is the static provider as its own plugin
// executable; pvlb bundles the same provider.
package main

import (
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/static"
)

func main() { pluginapi.Serve(&static.Provider{}) }
