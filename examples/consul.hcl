# Instances registered in Consul, followed with blocking queries.
#
#   CONSUL_HTTP_ADDR=127.0.0.1:8500 pvlb health -c examples/consul.hcl --force
#
# See docs/providers/consul.md.

discovery "consul" "local" {
  address      = env("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
  token        = env("CONSUL_HTTP_TOKEN", "")
  passing_only = true
}

strategy "weighted" {
  kind = "weighted"
}

service "peervault" {
  discovery = discovery.consul.local
  strategy  = strategy.weighted
}
