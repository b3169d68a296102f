//go:build race

package tiletoken

// raceEnabled reports a -race build, in which sync.Pool deliberately drops
// items and allocation counts are meaningless.
const raceEnabled = true
