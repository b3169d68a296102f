//go:build !race

package mbtiles

const raceEnabled = false
