// Command confluo-sidecar is the Confluo-Go daemon of one hypervisor. See docs/sidecar.md.
package main

import (
	"os"

	"github.com/confluo-go/confluo/sidecar"
)

func main() { os.Exit(sidecar.Main(os.Args[1:], os.Stderr)) }
