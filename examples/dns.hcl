# Servers found in DNS: every A and AAAA address of the name, on one port,
# as grpc-go's dns:/// resolver finds them; asked again when the records'
# TTL runs out (not sooner than min_refresh), the last good answer kept
# while DNS fails. record = "srv" reads SRV records instead: each target's
# port, and its weight as the server's weight.
#
#   pvlb validate -c examples/dns.hcl
#   pvlb health -c examples/dns.hcl --force

discovery "dns" "cluster" {
  name        = "peervault.default.svc.cluster.local"
  port        = 50051
  min_refresh = "5s"
}

service "peervault" {
  discovery = discovery.dns.cluster
}
