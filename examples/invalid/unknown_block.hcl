# A block type pvlb does not have; validate suggests the right one.
# want: 4:1 Unsupported block type: Did you mean "strategy"?

stratgy "rr" {
  kind = "round_robin"
}
