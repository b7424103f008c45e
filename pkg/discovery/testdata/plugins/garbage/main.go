// A plugin that prints something other than the handshake.
package main

import (
	"fmt"
	"time"
)

func main() {
	fmt.Println("hello, I am not a plugin")
	time.Sleep(time.Minute)
}
