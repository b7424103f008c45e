# An environment variable that is not set, with no default.
# want: 10:26 Error in function call: PVLB_EXAMPLE_UNSET_TOKEN is not set

discovery "consul" "dc1" {
  address = "127.0.0.1:8500"
}

strategy "rr" {
  kind = "round_robin"
  sticky_session { key = env("PVLB_EXAMPLE_UNSET_TOKEN") }
}
