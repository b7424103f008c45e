# A static discovery source with no endpoint blocks.
# want: 4:1 No endpoints: lists no servers

discovery "static" "empty" {
}

service "peervault" {
  discovery = discovery.static.empty
}
