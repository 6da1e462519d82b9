//go:build !(dpdk && linux && cgo)

package dpdk_test

import (
	"errors"
	"testing"

	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/dpdk"
)

func TestStubNotSupported(t *testing.T) {
	_, err := dpdk.Open(dpdk.Options{SocketPath: "/tmp/spr-stub.sock"})
	if !errors.Is(err, spray.ErrNotSupported) {
		t.Fatalf("Open without -tags dpdk: %v, want spray.ErrNotSupported", err)
	}
	if _, err := dpdk.Open(dpdk.Options{}); !errors.Is(err, dpdk.ErrInvalidOptions) {
		t.Fatalf("Open without a socket path: %v, want ErrInvalidOptions", err)
	}
}
