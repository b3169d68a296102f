//go:build race

package mbtiles

// raceEnabled: the race detector slows SQLite (pure Go) about 17-fold; timing bounds widen.
const raceEnabled = true
