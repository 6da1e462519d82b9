//go:build !linux

package afpacket

import (
	"context"
	"fmt"

	"github.com/confluo-go/confluo/pkg/spray"
)

// Source is an AF_PACKET capture source; it exists only on Linux.
type Source struct{}

var _ spray.Source = (*Source)(nil)

// Open returns an error matching spray.ErrNotSupported outside Linux.
func Open(opts Options) (*Source, error) {
	return nil, fmt.Errorf("afpacket: %w", spray.ErrNotSupported)
}

// Queues returns 0.
func (*Source) Queues() int { return 0 }

// Run returns an error matching spray.ErrNotSupported.
func (*Source) Run(context.Context, int, func([]spray.Frame)) error {
	return fmt.Errorf("afpacket: %w", spray.ErrNotSupported)
}

// Stats returns zero counters.
func (*Source) Stats() spray.SourceStats { return spray.SourceStats{} }

// Close does nothing.
func (*Source) Close() error { return nil }
