# Keys that belong together: each user's calls go to the server that
# caches that user's data. ring_hash is grpc-go's ring (same servers, same
# header: same picks); maglev is Envoy's table. hash_balance_factor keeps
# the hottest users from piling onto one server.
#
#   pvlb simulate -c examples/affinity.hcl --keys 100000 --key-skew 1.1 \
#     --compare round_robin,by_user,by_user_maglev,by_user_bounded

discovery "static" "cache_tier" {
  endpoint "cache1" { address = "10.0.1.1:50051" }
  endpoint "cache2" { address = "10.0.1.2:50051" }
  endpoint "cache3" { address = "10.0.1.3:50051" }
  endpoint "cache4" { address = "10.0.1.4:50051" }
  endpoint "cache5" { address = "10.0.1.5:50051" }
  endpoint "cache6" { address = "10.0.1.6:50051" }
}

strategy "by_user" {
  kind = "ring_hash"
  hash_key {
    header = "x-user-id" # the same user, the same server, on every client
  }
}

strategy "by_user_maglev" {
  kind = "maglev"
  hash_key {
    header = "x-user-id"
  }
}

strategy "by_user_bounded" {
  kind                = "maglev"
  hash_balance_factor = 125 # no server above 1.25 × its share of calls in flight
  hash_key {
    header = "x-user-id"
  }
}

service "peervault" {
  discovery = discovery.static.cache_tier
  strategy  = strategy.by_user
}

# Each server caches 2,000 users; a user it does not hold is fetched from
# the database behind it, five times slower.
simulation "peervault" {
  server "*" {
    latency      = "lognormal(4ms, 12ms)"
    capacity     = 32
    cache_keys   = 2000
    miss_latency = "lognormal(20ms, 60ms)"
  }
}
