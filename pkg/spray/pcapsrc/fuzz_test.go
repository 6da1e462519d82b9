package pcapsrc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/confluo-go/confluo/pkg/spray"
	"github.com/confluo-go/confluo/pkg/spray/internal/testframes"
	"github.com/confluo-go/confluo/pkg/spray/pcapsrc"
)

// FuzzReplay feeds arbitrary bytes as a capture, streamed and preloaded: no panic, an error
// wraps a pcapsrc sentinel, and both modes agree on the frames when the file is good.
func FuzzReplay(f *testing.F) {
	for _, ng := range []bool{false, true} {
		var buf bytes.Buffer
		pkts := testframes.Mixed(testframes.Flows(3), 6, 80, start)
		if ng {
			testframes.WritePcapng(&buf, pkts)
		} else {
			testframes.WritePcap(&buf, pkts)
		}
		f.Add(buf.Bytes())
		f.Add(buf.Bytes()[:buf.Len()/2])
	}
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
		counts := map[bool]int{}
		for _, preload := range []bool{false, true} {
			src, err := pcapsrc.New(open, "fuzz", pcapsrc.Options{Preload: preload, MaxPreloadBytes: 1 << 20})
			if err != nil {
				if !errors.Is(err, pcapsrc.ErrFormat) && !errors.Is(err, pcapsrc.ErrLinkType) && !errors.Is(err, pcapsrc.ErrTooLarge) {
					t.Fatalf("Open error %v wraps no pcapsrc sentinel", err)
				}
				return
			}
			err = src.Run(context.Background(), 0, func(fr []spray.Frame) {
				for _, f := range fr {
					if f.WireLen < len(f.Data) {
						t.Fatalf("wire length %d < captured %d", f.WireLen, len(f.Data))
					}
				}
				counts[preload] += len(fr)
			})
			if err != nil {
				if !errors.Is(err, pcapsrc.ErrFormat) {
					t.Fatalf("Run error %v does not wrap ErrFormat", err)
				}
				return
			}
		}
		if counts[false] != counts[true] {
			t.Fatalf("streamed %d frames, preloaded %d", counts[false], counts[true])
		}
	})
}
