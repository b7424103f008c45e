# Servers registered in etcd with etcd's own naming/endpoints Manager:
#   services/peervault/<id> = {"Addr": "host:port", "Metadata": {"weight": 2}}
#
#   ETCD_ENDPOINT=127.0.0.1:2379 pvlb health -c examples/etcd.hcl --force
#
# See docs/providers/etcd.md.

discovery "etcd" "main" {
  endpoints    = [env("ETCD_ENDPOINT", "127.0.0.1:2379")]
  prefix       = "services/"
  dial_timeout = "3s"
}

strategy "weighted" {
  kind = "weighted"
}

service "peervault" {
  discovery = discovery.etcd.main
  strategy  = strategy.weighted
}
