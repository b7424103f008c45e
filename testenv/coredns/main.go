// Command coredns is a real CoreDNS server, built from CoreDNS's own
// coremain for pvlb's tests of DNS discovery, with the few plugins they
// use: zones served from files the tests rewrite (file, which reloads
// them), errors, and bind, to listen on loopback only. It lives in a module of its own so that CoreDNS's
// dependencies never enter pvlb's.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
)

func init() {
	// The plugins a Corefile may name, in the order they run.
	dnsserver.Directives = []string{"bind", "errors", "file"}
}

func main() {
	coremain.Run()
}
