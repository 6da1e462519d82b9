//go:build invariants

package multilog

// invariants turns on expensive self-checks (go test -tags invariants).
const invariants = true
