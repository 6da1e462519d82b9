//go:build invariants

package ring

const invariants = true
