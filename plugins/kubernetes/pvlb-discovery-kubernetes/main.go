// Command pvlb-discovery-kubernetes is the Kubernetes provider as its own
// plugin executable; pvlb bundles the same provider.
package main

import (
	"github.com/peervault/pvlb/pkg/pluginapi"
	"github.com/peervault/pvlb/plugins/kubernetes"
)

func main() { pluginapi.Serve(&kubernetes.Provider{}) }
