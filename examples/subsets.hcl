# Sixty clients, thirty servers: without subsets every client connects to
# and health-checks every server (1,800 connections); with subsets of 5 on
# average each client keeps only its own (300 connections), and every
# server is held by as many clients as any other.
#
#   pvlb simulate -c examples/subsets.hcl --clients 60
#   pvlb simulate -c examples/subsets.hcl --clients 60 --no-subset

discovery "static" "fleet" {
  endpoint "server01" { address = "10.0.0.1:50051" }
  endpoint "server02" { address = "10.0.0.2:50051" }
  endpoint "server03" { address = "10.0.0.3:50051" }
  endpoint "server04" { address = "10.0.0.4:50051" }
  endpoint "server05" { address = "10.0.0.5:50051" }
  endpoint "server06" { address = "10.0.0.6:50051" }
  endpoint "server07" { address = "10.0.0.7:50051" }
  endpoint "server08" { address = "10.0.0.8:50051" }
  endpoint "server09" { address = "10.0.0.9:50051" }
  endpoint "server10" { address = "10.0.0.10:50051" }
  endpoint "server11" { address = "10.0.0.11:50051" }
  endpoint "server12" { address = "10.0.0.12:50051" }
  endpoint "server13" { address = "10.0.0.13:50051" }
  endpoint "server14" { address = "10.0.0.14:50051" }
  endpoint "server15" { address = "10.0.0.15:50051" }
  endpoint "server16" { address = "10.0.0.16:50051" }
  endpoint "server17" { address = "10.0.0.17:50051" }
  endpoint "server18" { address = "10.0.0.18:50051" }
  endpoint "server19" { address = "10.0.0.19:50051" }
  endpoint "server20" { address = "10.0.0.20:50051" }
  endpoint "server21" { address = "10.0.0.21:50051" }
  endpoint "server22" { address = "10.0.0.22:50051" }
  endpoint "server23" { address = "10.0.0.23:50051" }
  endpoint "server24" { address = "10.0.0.24:50051" }
  endpoint "server25" { address = "10.0.0.25:50051" }
  endpoint "server26" { address = "10.0.0.26:50051" }
  endpoint "server27" { address = "10.0.0.27:50051" }
  endpoint "server28" { address = "10.0.0.28:50051" }
  endpoint "server29" { address = "10.0.0.29:50051" }
  endpoint "server30" { address = "10.0.0.30:50051" }
}

service "peervault" {
  discovery = discovery.static.fleet

  subset {
    size = 5
    # Each client's place in the fleet, 0, 1, 2…, e.g. a StatefulSet's
    # ordinal: client_index = tonumber(env("POD_ORDINAL")). Without it, a
    # random one, as gRFC A68 draws.
  }
}
