package logstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const manifestName = "MANIFEST.json"

// maxSeq bounds a manifest's shard_first: appends from there never wrap sequence numbers.
const maxSeq = 1 << 62

// manifest is the JSON document describing a store directory. It is replaced atomically (write
// a temporary file, fsync it, rename it over the old one, fsync the directory).
type manifest struct {
	FormatVersion  int    `json:"format_version"`
	Schema         string `json:"schema"`
	RecordSize     int    `json:"record_size"`
	Shards         int    `json:"shards"`
	SegmentRecords int    `json:"segment_records"`
	// ShardFirst is, per shard, the first sequence number still kept: retention raises it
	// (before deleting files), so segment files below it are leftovers to delete and a missing
	// file above it is damage.
	ShardFirst []uint64 `json:"shard_first"`
	// Definitions is the owner's opaque configuration (indexes, filters, aggregates, triggers).
	Definitions json.RawMessage `json:"definitions,omitempty"`
}

func (m *manifest) validate() error {
	switch {
	case m.FormatVersion != FormatVersion:
		return fmt.Errorf("%w: format version %d, this build reads %d", ErrManifest, m.FormatVersion, FormatVersion)
	case m.RecordSize < 8:
		return fmt.Errorf("%w: record size %d", ErrManifest, m.RecordSize)
	case m.Shards < 1 || m.Shards > MaxShards:
		return fmt.Errorf("%w: %d shards", ErrManifest, m.Shards)
	case m.SegmentRecords < 1 || m.SegmentRecords > maxSegmentBytes/m.RecordSize:
		// A segment is allocated whole: a hostile count must not exhaust memory.
		return fmt.Errorf("%w: %d records of %d bytes per segment (at most 1 GiB)", ErrManifest, m.SegmentRecords, m.RecordSize)
	case len(m.ShardFirst) != m.Shards:
		return fmt.Errorf("%w: shard_first has %d entries for %d shards", ErrManifest, len(m.ShardFirst), m.Shards)
	}
	for i, f := range m.ShardFirst {
		if f%uint64(m.SegmentRecords) != 0 || f > maxSeq {
			return fmt.Errorf("%w: shard_first[%d] = %d is not a segment boundary below 2^62", ErrManifest, i, f)
		}
	}
	return nil
}

// readManifest returns the directory's manifest, or (nil, nil) if there is none.
func readManifest(dir string) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("logstore: read manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrManifest, filepath.Join(dir, manifestName), err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, manifestName), err)
	}
	return &m, nil
}

// writeManifest replaces the directory's manifest atomically.
func writeManifest(dir string, m *manifest) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("logstore: encode manifest: %w", err)
	}
	return writeFileAtomic(dir, manifestName, b.Bytes())
}

// writeFileAtomic writes name in dir atomically: tmp file, fsync, rename, fsync dir.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("logstore: write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("logstore: write %s: %w", name, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Exists reports whether dir holds a store (a manifest).
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, manifestName))
	return err == nil
}
