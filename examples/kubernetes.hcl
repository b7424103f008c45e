# A Kubernetes Service's endpoints, from its EndpointSlices.
#
#   pvlb health -c examples/kubernetes.hcl
#
# Uses $KUBECONFIG or ~/.kube/config, or in a pod its service account.
# See docs/providers/kubernetes.md for the Role it needs.

discovery "kubernetes" "cluster" {
  service = "peervault"
  port    = "grpc"
}

strategy "least_loaded" {
  kind         = "least_connections"
  choice_count = 2
}

service "peervault" {
  discovery = discovery.kubernetes.cluster
  strategy  = strategy.least_loaded
}
