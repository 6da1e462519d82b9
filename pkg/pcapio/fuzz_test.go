package pcapio_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/confluo-go/confluo/pkg/pcapio"
)

// FuzzReader feeds arbitrary bytes as a capture file: the reader must return frames or an error
// (wrapping ErrFormat, or ErrFrame/ErrLinkType from NextEthernet), never panic, and never return a
// frame whose wire length is below its captured length.
func FuzzReader(f *testing.F) {
	for _, name := range []string{"encap_sample.pcap", "encap_sample.pcapng"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 1500)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := pcapio.NewReader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, pcapio.ErrFormat) {
				t.Fatalf("NewReader error does not wrap ErrFormat: %v", err)
			}
			return
		}
		_ = r.LinkType()
		for range 1000 {
			fr, err := r.NextEthernet()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, pcapio.ErrFormat) && !errors.Is(err, pcapio.ErrFrame) && !errors.Is(err, pcapio.ErrLinkType) {
					t.Fatalf("Next error wraps no sentinel: %v", err)
				}
				if errors.Is(err, pcapio.ErrFormat) {
					return
				}
				continue
			}
			if fr.WireLen < len(fr.Data) {
				t.Fatalf("wire length %d < captured %d", fr.WireLen, len(fr.Data))
			}
		}
	})
}
