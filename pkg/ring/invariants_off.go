//go:build !invariants

package ring

// invariants turns on the self-checks of Ring's numbered invariants (build tag invariants; the
// tests' CI run sets it).
const invariants = false
