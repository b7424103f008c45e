// A plugin that exits before the handshake.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "cannot start: no configuration")
	os.Exit(3)
}
