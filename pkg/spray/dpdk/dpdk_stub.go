//go:build !(dpdk && linux && cgo)

package dpdk

import (
	"context"
	"fmt"

	"github.com/confluo-go/confluo/pkg/spray"
)

// Source is a DPDK vhost-user capture source; without the dpdk build tag it cannot be opened.
type Source struct{}

var _ spray.Source = (*Source)(nil)

// Open returns an error matching spray.ErrNotSupported: this binary was built without the dpdk
// build tag (or without cgo, or not for Linux).
func Open(opts Options) (*Source, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("dpdk: built without -tags dpdk: %w", spray.ErrNotSupported)
}

// Shutdown does nothing without the dpdk build tag.
func Shutdown() error { return nil }

// Queues returns 1.
func (*Source) Queues() int { return 1 }

// Run returns an error matching spray.ErrNotSupported.
func (*Source) Run(context.Context, int, func([]spray.Frame)) error {
	return fmt.Errorf("dpdk: %w", spray.ErrNotSupported)
}

// Stats returns zero counters.
func (*Source) Stats() spray.SourceStats { return spray.SourceStats{} }

// LinkUp reports false.
func (*Source) LinkUp() bool { return false }

// Close does nothing.
func (*Source) Close() error { return nil }
