# Servers of different sizes that say how loaded they are. Each reports its
# load with ORCA (run real ones with pvlb demo-server --capacity); a
# weighted_round_robin strategy turns the reports into weights, as
# grpc-go's weighted_round_robin (gRFC A58) does, with no weights written
# here.
#
#   pvlb simulate -c examples/load-reports.hcl --scenario busy_afternoon --clients 50 \
#     --compare round_robin,least_connections,peak_ewma,by_load

discovery "static" "mixed_fleet" {
  endpoint "small"  { address = "10.0.2.1:50051" }
  endpoint "medium" { address = "10.0.2.2:50051" }
  endpoint "large"  { address = "10.0.2.3:50051" }
}

strategy "by_load" {
  kind                 = "weighted_round_robin"
  blackout_period      = "10s" # a server's reports count after this long (A58's default)
  weight_update_period = "1s"
}

service "peervault" {
  discovery = discovery.static.mixed_fleet
  strategy  = strategy.by_load
}

# The same code on machines of 8, 16 and 32 cores: each answers in about
# 10ms and works on as many calls at once as it has cores.
simulation "peervault" {
  server "*" { latency = "lognormal(10ms, 30ms)" }
  server "small" { capacity = 8 }
  server "medium" { capacity = 16 }
  server "large" { capacity = 32 }
}

# A quiet morning, then the afternoon's load: from 1,000 to 2,400 calls a
# second, more than the small server can answer at a third of it.
scenario "busy_afternoon" {
  service  = "peervault"
  duration = "60s"
  rps      = 1000

  at "20s" {
    rps  = 2400
    ramp = "10s"
  }
}
