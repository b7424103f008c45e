# A service that does not say where its servers are.
# want: 8:1 Service without discovery: discovery = discovery.static.local

strategy "rr" {
  kind = "round_robin"
}

service "peervault" {
  strategy = strategy.rr
}
