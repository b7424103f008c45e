# Six servers in two zones, the client in eu-west-1a. A call that crosses
# zones pays the hop between them (2ms here) and, in the cloud, by the
# gigabyte. locality keeps calls in the client's zone while that zone has
# its share of healthy servers, and spills over only the shortfall, as
# Envoy's zone-aware routing does. At 10s two of the three local servers
# go down: half the calls spill over; at 20s they are back.
#
#   pvlb simulate -c examples/zones.hcl --scenario zone_outage
#   pvlb simulate -c examples/zones.hcl --scenario zone_outage --no-locality
#
# A fleet of 40 clients spread over the zones as the servers are (or as
# client_zones says): every call stays in its zone and every server gets
# the same load, where balancing over every zone sends half across.
#
#   pvlb simulate -c examples/zones.hcl --clients 40
#   pvlb simulate -c examples/zones.hcl --clients 40 --no-locality

health_policy "quick" {
  interval = "1s"
  timeout  = "250ms"
}

discovery "static" "fleet" {
  endpoint "a1" {
    address = "10.0.1.1:50051"
    zone    = "eu-west-1a"
  }
  endpoint "a2" {
    address = "10.0.1.2:50051"
    zone    = "eu-west-1a"
  }
  endpoint "a3" {
    address = "10.0.1.3:50051"
    zone    = "eu-west-1a"
  }
  endpoint "b1" {
    address = "10.0.2.1:50051"
    zone    = "eu-west-1b"
  }
  endpoint "b2" {
    address = "10.0.2.2:50051"
    zone    = "eu-west-1b"
  }
  endpoint "b3" {
    address = "10.0.2.3:50051"
    zone    = "eu-west-1b"
  }
}

service "peervault" {
  discovery = discovery.static.fleet
  health    = health_policy.quick

  locality {
    # On Kubernetes, from the downward API: local_zone = env("POD_ZONE")
    local_zone = "eu-west-1a"
    # Where the fleet of clients runs, when not spread as the servers are:
    # client_zones = { "eu-west-1a" = 3, "eu-west-1b" = 1 }
  }
}

# Every server answers in about 2ms; crossing zones adds 2ms.
simulation "peervault" {
  cross_zone_latency = "2ms"
  server "*" { latency = "lognormal(2ms, 6ms)" }
}

scenario "zone_outage" {
  service  = "peervault"
  requests = 60000
  rps      = 2000

  at "10s" {
    server "a1" { down = true }
    server "a2" { down = true }
  }
  at "20s" {
    server "a1" { down = false }
    server "a2" { down = false }
  }
}
