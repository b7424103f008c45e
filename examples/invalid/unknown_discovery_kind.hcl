# A discovery kind that does not exist; validate suggests the right one.
# want: 4:11 Unknown discovery kind: Did you mean "consul"?

discovery "consol" "dc1" {
  address = "127.0.0.1:8500"
}
