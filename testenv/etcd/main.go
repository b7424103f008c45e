// Command etcd is a real etcd server, built from etcd's own etcdmain for
// pvlb's tests. It lives in this separate module so that the etcd server's
// dependencies never enter pvlb's.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
